// The server's hot loops in WebAssembly SIMD (fold.wat, compiled into fold.wasm): FedAvg's weighted sums and the
// uploads' finite check, over one shared WebAssembly memory, the fold arena. The server receives uploads straight
// into arena blocks and keeps its float64 accumulator there, so the kernels read updates where they arrived; an
// update anywhere else is copied in first (~1.8 ms per 16 MB on this machine kind). A pass over a whole decoder is split with a helper thread when the machine has a
// second core: the passes are bound by memory traffic, and two cores draw ~1.6x one core's (bench/aggregate.ts).
//
// The arena hands out whole blocks and takes them back for reuse; it never shrinks (a WebAssembly memory cannot),
// so its size is the high-water mark of blocks in use: concurrent uploads + held updates + the accumulator.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

const PAGE = 65536;
/** The kernel addresses memory with i32: 4 GiB at most. */
const MAX_PAGES = 65536;
/** Page 0 holds the kernels' argument tables: update addresses (i32) for this thread and the helper, weights (f64). */
const ADDRS = 0;
const HELPER_ADDRS = 4096;
const WEIGHTS = 8192;
/** Most updates one call can sum (the tables' room). */
export const MAX_UPDATES_PER_CALL = 1024;
/** The kernel works on runs of 8 values; the rest of a run is summed in JS (same order of operations). */
const STEP = 8;
/** Runs shorter than this are not worth waking the helper for. */
const SPLIT_MIN = 1 << 16;
/** How long the helper may take to pick a job up before this thread does it itself (its core may be busy). */
const PICKUP_MS = 2;

// Helper thread protocol, on an Int32Array `ctl` over a SharedArrayBuffer:
//   ctl[0] state: IDLE -> POSTED (this thread) -> TAKEN (helper) -> DONE (helper) -> IDLE (this thread), or
//          POSTED -> IDLE when this thread takes a job back. The helper is unref'd and ends with the process.
//   ctl[1] ready (helper started), ctl[2..9] the kernel's integer arguments, float64 slot 6 (bytes 48..56) the scale.
const IDLE = 0;
const POSTED = 1;
const TAKEN = 2;
const DONE = 3;

const HELPER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { module, memory, ctl } = workerData;
const reduce = new WebAssembly.Instance(module, { env: { memory } }).exports.reduce;
const c = new Int32Array(ctl);
const scale = new Float64Array(ctl);
Atomics.store(c, 1, 1);
for (;;) {
  const s = Atomics.load(c, 0);
  if (s !== ${POSTED} || Atomics.compareExchange(c, 0, ${POSTED}, ${TAKEN}) !== ${POSTED}) {
    Atomics.wait(c, 0, s);
    continue;
  }
  reduce(c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], scale[6]);
  Atomics.store(c, 0, ${DONE});
  Atomics.notify(c, 0);
}
`;

type ReduceKernel = (dst: number, acc: number, n: number, ptab: number, wtab: number, k: number, add: number, out32: number, scale: number) => void;
type ScanKernel = (addr: number, n: number) => number;

export class FoldArena {
  private readonly memory = new WebAssembly.Memory({ initial: 1, maximum: MAX_PAGES, shared: true });
  private readonly kernel: ReduceKernel;
  private readonly scanF32: ScanKernel;
  private readonly scanF16: ScanKernel;
  /** Every SharedArrayBuffer object the memory has handed out (one per size it has had). */
  private readonly buffers = new WeakSet<ArrayBufferLike>();
  private readonly blockBytes = new Map<number, number>();
  private readonly freeBlocks = new Map<number, number[]>();
  private top = PAGE;
  private readonly addrTable: Int32Array;
  private readonly helperAddrTable: Int32Array;
  private readonly weightTable: Float64Array;
  private readonly helper: { ctl: Int32Array; scale: Float64Array } | undefined;

  /** @param threads 2 to split long passes with a helper thread (default: when the machine has two cores). */
  constructor(threads = availableParallelism() > 1 ? 2 : 1) {
    // Synchronous compilation is fine in Node for a module this small (under 1 KB).
    const module = new WebAssembly.Module(readFileSync(new URL('./fold.wasm', import.meta.url)));
    const instance = new WebAssembly.Instance(module, { env: { memory: this.memory } });
    this.kernel = instance.exports['reduce'] as ReduceKernel;
    this.scanF32 = instance.exports['first_nonfinite_f32'] as ScanKernel;
    this.scanF16 = instance.exports['first_nonfinite_f16'] as ScanKernel;
    const buf = this.currentBuffer();
    this.addrTable = new Int32Array(buf, ADDRS, MAX_UPDATES_PER_CALL);
    this.helperAddrTable = new Int32Array(buf, HELPER_ADDRS, MAX_UPDATES_PER_CALL);
    this.weightTable = new Float64Array(buf, WEIGHTS, MAX_UPDATES_PER_CALL);
    if (threads > 1) {
      const ctl = new SharedArrayBuffer(64);
      const worker = new Worker(HELPER_SOURCE, { eval: true, workerData: { module, memory: this.memory, ctl } });
      worker.unref(); // idle in Atomics.wait; it must not keep the process alive
      worker.on('error', () => {}); // a helper that fails to start never reports ready: passes stay on this thread
      this.helper = { ctl: new Int32Array(ctl), scale: new Float64Array(ctl) };
    }
  }

  /** Threads a long pass runs on (the helper counts once it has started). */
  get threads(): number {
    return this.helper && Atomics.load(this.helper.ctl, 1) === 1 ? 2 : 1;
  }

  /** Bytes the arena has taken from the system (it never gives them back). */
  get reservedBytes(): number {
    return this.top;
  }

  /** A block of `n` bytes (64 KiB aligned; contents undefined), until give(). */
  bytes(n: number): Uint8Array {
    const addr = this.take(n);
    return new Uint8Array(this.currentBuffer(), addr, n);
  }

  f32(n: number): Float32Array {
    const addr = this.take(4 * n);
    return new Float32Array(this.currentBuffer(), addr, n);
  }

  f64(n: number): Float64Array {
    const addr = this.take(8 * n);
    return new Float64Array(this.currentBuffer(), addr, n);
  }

  /** Hand a block back (through any view that starts at its first byte). */
  give(view: ArrayBufferView): void {
    const addr = this.addressOf(view);
    const size = this.blockBytes.get(addr);
    if (size === undefined) throw new Error('FoldArena.give: not the start of an arena block');
    this.blockBytes.delete(addr);
    const list = this.freeBlocks.get(size) ?? [];
    list.push(addr);
    this.freeBlocks.set(size, list);
  }

  /** Byte address of a view's first element, or -1 when the view is not in the arena. */
  addressOf(view: ArrayBufferView): number {
    return this.buffers.has(view.buffer) ? view.byteOffset : -1;
  }

  /**
   * Index of the first NaN / +-Infinity among `count` little-endian values of `dtype` at byte `at` of `view`
   * (which must be in the arena), or -1.
   */
  firstNonFinite(view: Uint8Array, at: number, count: number, dtype: 'F32' | 'F16'): number {
    const addr = this.addressOf(view);
    if (addr < 0) throw new Error('FoldArena.firstNonFinite: the view is not in the arena');
    if (at < 0 || at + count * (dtype === 'F32' ? 4 : 2) > view.length) throw new RangeError('FoldArena.firstNonFinite: range outside the view');
    return (dtype === 'F32' ? this.scanF32 : this.scanF16)(addr + at, count);
  }

  /** acc[i] = (add ? acc[i] : 0) + sum_j ws[j] xs[j][i], in float64, left to right. */
  accumulate(acc: Float64Array, add: boolean, xs: ReadonlyArray<Float32Array>, ws: ReadonlyArray<number>): void {
    this.run(undefined, acc, add, xs, ws, 1);
  }

  /**
   * dst[i] = float32(((acc ? acc[i] : 0) + sum_j ws[j] xs[j][i]) * scale). `dst` may be xs[0] itself (the values are
   * read before they are overwritten).
   */
  scaledSum(dst: Float32Array, acc: Float64Array | undefined, xs: ReadonlyArray<Float32Array>, ws: ReadonlyArray<number>, scale: number): void {
    this.run(dst, acc, acc !== undefined, xs, ws, scale);
  }

  private run(dst: Float32Array | undefined, acc: Float64Array | undefined, add: boolean, xs: ReadonlyArray<Float32Array>, ws: ReadonlyArray<number>, scale: number): void {
    const k = xs.length;
    const n = dst ? dst.length : acc!.length;
    if (k > MAX_UPDATES_PER_CALL) throw new Error(`FoldArena: at most ${MAX_UPDATES_PER_CALL} updates per call, got ${k}`);
    if (ws.length !== k) throw new Error('FoldArena: one weight per update');
    if (acc && acc.length !== n) throw new Error('FoldArena: accumulator length differs');
    const at = (v: ArrayBufferView, what: string): number => {
      const a = this.addressOf(v);
      if (a < 0) throw new Error(`FoldArena: ${what} is not in the arena`);
      return a;
    };
    for (let j = 0; j < k; j++) {
      if (xs[j]!.length !== n) throw new Error(`FoldArena: update ${j} has ${xs[j]!.length} values, expected ${n}`);
      this.addrTable[j] = at(xs[j]!, `update ${j}`);
      this.weightTable[j] = ws[j]!;
    }
    const body = n - (n % STEP);
    const dstAt = dst ? at(dst, 'the output') : 0;
    const accAt = acc ? at(acc, 'the accumulator') : 0;
    // The helper takes the second half of the run (its own address table, shifted), this thread the first.
    const first = this.threads === 2 && body >= SPLIT_MIN ? (body / 2) - ((body / 2) % STEP) : body;
    const posted = first < body;
    if (posted) this.post(dstAt + 4 * first, accAt + 8 * first, body - first, k, add, !!dst, scale, first);
    this.kernel(dstAt, accAt, posted ? first : body, ADDRS, WEIGHTS, k, add ? 1 : 0, dst ? 1 : 0, scale);
    if (posted) this.joinHelper(() => this.kernel(dstAt + 4 * first, accAt + 8 * first, body - first, HELPER_ADDRS, WEIGHTS, k, add ? 1 : 0, dst ? 1 : 0, scale));
    for (let i = body; i < n; i++) {
      let s = add ? acc![i]! : 0;
      for (let j = 0; j < k; j++) s += ws[j]! * xs[j]![i]!;
      if (dst) dst[i] = s * scale;
      else acc![i] = s;
    }
  }

  private post(dst: number, acc: number, n: number, k: number, add: boolean, out32: boolean, scale: number, shift: number): void {
    const h = this.helper!;
    for (let j = 0; j < k; j++) this.helperAddrTable[j] = this.addrTable[j]! + 4 * shift;
    h.ctl.set([dst, acc, n, HELPER_ADDRS, WEIGHTS, k, add ? 1 : 0, out32 ? 1 : 0], 2);
    h.scale[6] = scale;
    Atomics.store(h.ctl, 0, POSTED);
    Atomics.notify(h.ctl, 0);
  }

  /** Wait for the helper's half; if it has not picked the job up within PICKUP_MS, take it back and run it here. */
  private joinHelper(runHere: () => void): void {
    const ctl = this.helper!.ctl;
    const deadline = performance.now() + PICKUP_MS;
    for (;;) {
      const s = Atomics.load(ctl, 0);
      if (s === DONE) break;
      if (s === POSTED && performance.now() >= deadline && Atomics.compareExchange(ctl, 0, POSTED, IDLE) === POSTED) {
        runHere();
        return;
      }
      Atomics.wait(ctl, 0, s, s === POSTED ? PICKUP_MS : 50);
    }
    Atomics.store(ctl, 0, IDLE);
  }

  private take(n: number): number {
    const size = Math.max(PAGE, Math.ceil(n / PAGE) * PAGE);
    let addr = this.freeBlocks.get(size)?.pop();
    if (addr === undefined) {
      if ((this.top + size) / PAGE > MAX_PAGES) throw new RangeError(`FoldArena: ${this.top + size} bytes would exceed the 4 GiB WebAssembly memory`);
      addr = this.top;
      this.top += size;
      const pages = this.top / PAGE - this.memory.buffer.byteLength / PAGE;
      if (pages > 0) this.memory.grow(pages);
    }
    this.blockBytes.set(addr, size);
    return addr;
  }

  private currentBuffer(): SharedArrayBuffer {
    // A shared memory's old buffers stay valid when it grows; each size has its own buffer object.
    const b = this.memory.buffer as unknown as SharedArrayBuffer;
    this.buffers.add(b);
    return b;
  }
}

let arena: FoldArena | undefined;

/** The process's fold arena (one per thread: each worker thread has its own). */
export function foldArena(): FoldArena {
  return (arena ??= new FoldArena());
}

/** Bytes the process's fold arena has reserved, 0 when none was made (for /metrics; does not make one). */
export function foldArenaBytes(): number {
  return arena?.reservedBytes ?? 0;
}
