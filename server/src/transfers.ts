// Admission of transfer streams, so that no site can hold what other sites need:
//   - one upload and one download stream per site at a time (a second is refused at once, ABORTED, and the first
//     goes on);
//   - an upload permit (max_concurrent_uploads) only after a valid UpdateHeader, never for a stream that has
//     said nothing yet; a download permit (max_concurrent_downloads) before the frames go out, so that the bytes
//     queued for sites stay bounded however many download at once;
//   - deadlines: for the header, between two frames, and for the whole transfer (scaled to its size);
//   - a stream reads ahead at most one message (Node's object-mode default is 16: 16 MiB per idle stream).
import { status } from '@grpc/grpc-js';
import type { ServerConfig } from './config.ts';
import { FedError } from './errors.ts';

export class Semaphore {
  private waiters: Array<() => void> = [];
  constructor(private free: number) {}

  /** A permit (call the returned function to give it back); rejects with the signal's reason on abort. */
  async acquire(signal?: AbortSignal): Promise<() => void> {
    if (this.free > 0) this.free--;
    else {
      await new Promise<void>((resolve, reject) => {
        if (signal?.aborted) return reject(signal.reason);
        const grant = () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        const onAbort = () => {
          this.waiters.splice(this.waiters.indexOf(grant), 1);
          reject(signal!.reason);
        };
        this.waiters.push(grant);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next) next();
      else this.free++;
    };
  }
}

export const deadlineExceeded = (reason: string, msg: string) => new FedError(status.DEADLINE_EXCEEDED, reason, msg);

export type Direction = 'upload' | 'download';

export class TransferGate {
  private readonly streams = { upload: new Set<string>(), download: new Set<string>() };
  private readonly permits: Record<Direction, Semaphore>;

  constructor(private readonly limits: ServerConfig['limits']) {
    this.permits = { upload: new Semaphore(limits.max_concurrent_uploads), download: new Semaphore(limits.max_concurrent_downloads) };
  }

  /** Register the site's stream; returns its release. Throws ABORTED while another one of its kind is open. */
  open(direction: Direction, site: string): () => void {
    const streams = this.streams[direction];
    if (streams.has(site)) {
      throw new FedError(status.ABORTED, `${direction}_in_progress`, `site ${site} already has a ${direction} stream open: one at a time (this one is refused, the other goes on)`);
    }
    streams.add(site);
    let closed = false;
    return () => {
      if (!closed) streams.delete(site);
      closed = true;
    };
  }

  /** A permit (uploads: after the header was accepted); waits while the limit's worth are transferring. */
  permit(direction: Direction, signal: AbortSignal): Promise<() => void> {
    return this.permits[direction].acquire(signal);
  }

  get headerMs(): number {
    return this.limits.header_timeout_s * 1000;
  }

  get chunkMs(): number {
    return this.limits.chunk_timeout_s * 1000;
  }

  /** Time allowed for a whole transfer of this many bytes (either direction). */
  transferMs(bytes: number): number {
    return (this.limits.transfer_timeout_s + bytes / this.limits.min_upload_bytes_per_s) * 1000;
  }
}

/** The next message of a stream within `ms`, or a DEADLINE_EXCEEDED FedError; the signal's reason on abort. */
export function nextWithin<T>(it: AsyncIterator<T>, ms: number, signal: AbortSignal, reason: string, what: string): Promise<IteratorResult<T>> {
  if (signal.aborted) return Promise.reject(signal.reason);
  const next = it.next();
  next.catch(() => undefined); // when the deadline wins, the stream's end settles this later
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish(() => reject(deadlineExceeded(reason, `${what} did not arrive within ${(ms / 1000).toFixed(1)} s`))), Math.max(0, ms));
    const onAbort = () => finish(() => reject(signal.reason));
    signal.addEventListener('abort', onAbort, { once: true });
    function finish(f: () => void) {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      f();
    }
    next.then((r) => finish(() => resolve(r)), (e) => finish(() => reject(e)));
  });
}

/** Let a readable stream buffer at most `n` objects ahead of its reader (feature-detected Node internals). */
export function limitReadAhead(stream: NodeJS.ReadableStream, n = 1): void {
  const state = (stream as unknown as { _readableState?: { highWaterMark?: number } })._readableState;
  if (state && typeof state.highWaterMark === 'number') state.highWaterMark = n;
}

/**
 * The status gRPC itself answered on a server call it ended before the handler did (e.g. RESOURCE_EXHAUSTED for
 * a message over the size limit), read from the HTTP/2 stream's sent headers; undefined when not found.
 */
export function transportStatus(call: unknown): { code: number; details: string } | undefined {
  let c = (call as { call?: unknown }).call as Record<string, unknown> | undefined;
  for (let depth = 0; c && depth < 8; depth++) {
    const stream = c.stream as { sentHeaders?: Record<string, unknown> } | undefined;
    if (stream?.sentHeaders) {
      const code = Number(stream.sentHeaders['grpc-status']);
      if (!Number.isInteger(code)) return undefined;
      return { code, details: decodeURIComponent(String(stream.sentHeaders['grpc-message'] ?? '')) };
    }
    c = c.nextCall as Record<string, unknown> | undefined;
  }
  return undefined;
}
