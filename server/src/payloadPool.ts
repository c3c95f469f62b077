// Receive buffers for uploads, reused from update to update. A fresh 16 MB buffer costs ~6 ms of page faults on
// this machine kind and adds to the garbage collector's external-memory pressure; a server takes one per update.
export class PayloadPool {
  private readonly free: Uint8Array[] = [];

  /** @param maxFree buffers kept for reuse (each is one payload: 16.2 MB for a sam-vit-base decoder in float32). */
  constructor(private readonly maxFree = 2) {}

  /** A buffer of exactly `bytes` bytes (contents undefined). */
  take(bytes: number): Uint8Array {
    const i = this.free.findIndex((b) => b.length === bytes);
    if (i < 0) return new Uint8Array(bytes);
    return this.free.splice(i, 1)[0]!;
  }

  /** Hand a buffer back once nothing reads it any more. */
  give(b: Uint8Array): void {
    if (this.free.includes(b)) return;
    if (this.free.length >= this.maxFree) this.free.shift();
    this.free.push(b);
  }

  get size(): number {
    return this.free.length;
  }
}
