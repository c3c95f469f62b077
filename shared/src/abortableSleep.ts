// A wait that ends early when its signal aborts (a daemon asked to stop must not sit out a backoff).
import { setTimeout as sleep } from 'node:timers/promises';

/** Resolves after `ms`, or at once when `signal` aborts (callers check signal.aborted); never rejects. */
export async function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return;
  await sleep(ms, undefined, { signal }).catch(() => undefined);
}
