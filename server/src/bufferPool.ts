// Large typed arrays reused instead of allocated again. A fresh 16 MB buffer costs ~6 ms of page faults on this
// machine kind and adds to the garbage collector's external-memory pressure. The server's upload receive buffers
// come from here for strategies that keep every update (the others receive into the fold arena).
export class BufferPool<T extends { length: number }> {
  private readonly free: T[] = [];

  /** @param make allocates a new buffer; @param maxFree how many free buffers are kept. */
  constructor(private readonly make: (length: number) => T, private readonly maxFree = 1) {}

  /** A buffer of exactly `length` elements (contents undefined). */
  take(length: number): T {
    const i = this.free.findIndex((b) => b.length === length);
    return i < 0 ? this.make(length) : this.free.splice(i, 1)[0]!;
  }

  /** Hand a buffer back once nothing reads it any more. */
  give(b: T): void {
    if (this.free.includes(b)) return;
    if (this.free.length >= this.maxFree) this.free.shift();
    this.free.push(b);
  }
}
