// A full garbage collection on demand, at a phase boundary of the site daemon: after local training, before the
// upload. The transfers allocate ~16-32 MB of message buffers each, so V8's external-memory trigger sets off a
// major collection every second transfer or so; when one lands in an upload, its concurrent marking takes a core
// the stream needs, and the upload takes ~45 ms instead of ~30 (bench/README.md, "Collect before the upload").
// Collecting first resets that count, so the upload's own allocations stay under the trigger.
//
// Node exposes gc() only under --expose-gc. Setting the flag at run time and taking gc from a context made while
// it is set gives the same function without a command-line flag; the flag is unset again right after.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | null | undefined;

function resolveGc(): (() => void) | null {
  const own = (globalThis as { gc?: unknown }).gc;
  if (typeof own === 'function') return own as () => void;
  try {
    setFlagsFromString('--expose-gc');
    const fromContext: unknown = runInNewContext('gc');
    return typeof fromContext === 'function' ? (fromContext as () => void) : null;
  } catch {
    return null;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}

/** Run a full (mark-compact) collection now. Returns false where this runtime does not allow it. */
export function collectGarbage(): boolean {
  if (gc === undefined) gc = resolveGc();
  if (!gc) return false;
  gc();
  return true;
}
