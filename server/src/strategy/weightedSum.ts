// Streaming weighted mean over the fold arena: FedAvg's sum as the server runs it, updates folded in as they arrive,
// float64 accumulation in WebAssembly SIMD (foldArena.ts). Strategies reach it through the Aggregator.
import { backToBack } from '@fedsam/shared/transfer/codec';
import { AggregationError, checkLayout, type NamedTensors } from './aggregate.ts';
import { foldArena, type FoldArena } from './foldArena.ts';

interface Slot {
  name: string;
  shape: number[];
  offset: number;
  length: number;
}

/**
 * A new float32 buffer with its pages touched: a fresh 16 MB buffer costs ~6-13 ms of page faults on this machine
 * kind, better paid at round start than while an upload waits for its answer or after the last one.
 */
export function touchedF32(n: number): Float32Array {
  const b = new Float32Array(n);
  b.fill(0);
  return b;
}

/** Updates held before a fold pass: one pass reads and writes the float64 accumulator once for all of them. */
export const FOLD_BATCH = 4;

/** An update as the fold kernel reads it: float32 values in the fold arena, whole (in layout order) or per tensor. */
interface Held {
  weight: number;
  /** All values back to back in layout order, when they lie so. */
  flat: Float32Array | undefined;
  parts: Float32Array[];
  release: () => void;
}

/**
 * Streaming weighted mean: sum_i w_i x_i * (1 / sum_i w_i), accumulated in float64 and rounded to float32 once.
 * Memory is O(model) whatever the number of updates: one flat float64 accumulator, at most FOLD_BATCH held updates.
 *
 * Memory traffic, not arithmetic, sets the cost (the WebAssembly kernel in foldArena.ts), so updates are held
 * until FOLD_BATCH of them are waiting and then summed into the accumulator in one pass; mean() sums the last held
 * ones, scales and rounds in one more pass (what the step after the last upload costs). The first pass writes the
 * accumulator instead of adding to it, so it is never zeroed; with at most FOLD_BATCH updates it is never used.
 * Contract: add() may keep the update's arrays until it calls `release`; the caller must not modify them before.
 */
export class WeightedSum {
  private readonly slots: Slot[] = [];
  private readonly size: number;
  /** Taken from the arena by the first fold pass. */
  private acc: Float64Array | undefined;
  private held: Held[] = [];
  private readonly out: Float32Array;
  private result: NamedTensors | undefined;
  private discarded = false;
  private total = 0;
  private n = 0;

  /** @param out the buffer mean() writes (layout-sized); by default a new one. */
  constructor(private readonly layout: NamedTensors, out?: Float32Array, private readonly arena: FoldArena = foldArena()) {
    let offset = 0;
    for (const [name, t] of layout) {
      this.slots.push({ name, shape: [...t.shape], offset, length: t.data.length });
      offset += t.data.length;
    }
    this.size = offset;
    if (out && out.length !== this.size) throw new AggregationError(`output buffer has ${out.length} values, expected ${this.size}`);
    this.out = out ?? touchedF32(this.size);
  }

  get count(): number {
    return this.n;
  }

  get totalWeight(): number {
    return this.total;
  }

  /**
   * Add one update; `release` is called once its arrays are no longer read. Arrays that live in the fold arena
   * (upload receive buffers) are the sum's until then: mean() writes over them.
   */
  add(weights: NamedTensors, weight: number, release?: () => void): void {
    if (!(weight > 0) || !Number.isFinite(weight)) throw new AggregationError(`weight must be a positive finite number, got ${weight}`);
    if (this.result || this.discarded) throw new AggregationError('this sum is closed: mean() was already taken or the round dropped');
    checkLayout(this.layout, weights, 'update');
    const held = this.hold(weights, weight, release);
    if (this.held.length === FOLD_BATCH) this.fold();
    this.held.push(held);
    this.total += weight;
    this.n++;
  }

  /** The weighted mean as float32 tensors (views of one buffer). Closes the sum; later calls return the same tensors. */
  mean(): NamedTensors {
    if (this.result) return this.result;
    if (this.discarded) throw new AggregationError('this sum was discarded');
    if (this.n === 0) throw new AggregationError('no update to average');
    const held = this.held;
    const ws = held.map((h) => h.weight);
    // Written into the first held update's own arrays (each value is read before it is overwritten), then copied
    // out: the arena's blocks go back to it, the new global must outlive them.
    for (const seg of this.segments(held)) {
      const dst = seg.xs[0]!;
      this.arena.scaledSum(dst, this.acc?.subarray(seg.offset, seg.offset + seg.length), seg.xs, ws, 1 / this.total);
      this.out.set(dst, seg.offset);
    }
    this.releaseHeld();
    if (this.acc) this.arena.give(this.acc);
    this.acc = undefined;
    const result: NamedTensors = new Map();
    for (const s of this.slots) result.set(s.name, { dtype: 'float32', shape: [...s.shape], data: this.out.subarray(s.offset, s.offset + s.length) });
    this.result = result;
    return result;
  }

  /** Close the sum without a mean: release the held updates, give the accumulator back. */
  discard(): void {
    this.releaseHeld();
    if (this.acc) this.arena.give(this.acc);
    this.acc = undefined;
    this.discarded = true;
  }

  /** Sum the held updates into the accumulator. */
  private fold(): void {
    const first = !this.acc;
    const acc = (this.acc ??= this.arena.f64(this.size));
    const ws = this.held.map((h) => h.weight);
    for (const seg of this.segments(this.held)) this.arena.accumulate(acc.subarray(seg.offset, seg.offset + seg.length), !first, seg.xs, ws);
    this.releaseHeld();
  }

  private releaseHeld(): void {
    for (const h of this.held.splice(0)) h.release();
  }

  /** One run over everything when every held update is flat, else one per tensor. */
  private segments(held: Held[]): Array<{ offset: number; length: number; xs: Float32Array[] }> {
    if (held.every((h) => h.flat)) return [{ offset: 0, length: this.size, xs: held.map((h) => h.flat!) }];
    return this.slots.map((s, i) => ({ offset: s.offset, length: s.length, xs: held.map((h) => h.parts[i]!) }));
  }

  /** The update as the kernel reads it: in place when it is in the arena, else copied in (and released at once). */
  private hold(weights: NamedTensors, weight: number, release: (() => void) | undefined): Held {
    const parts = this.slots.map((s) => {
      const x = weights.get(s.name)!.data as Float32Array;
      if (x.length !== s.length) throw new AggregationError(`update: tensor "${s.name}" has ${x.length} values, expected ${s.length}`);
      return x;
    });
    if (parts.every((x) => this.arena.addressOf(x) >= 0)) {
      return { weight, flat: backToBack(parts), parts, release: release ?? (() => {}) };
    }
    const copy = this.arena.f32(this.size);
    this.slots.forEach((s, i) => copy.set(parts[i]!, s.offset));
    release?.();
    return {
      weight,
      flat: copy,
      parts: this.slots.map((s) => copy.subarray(s.offset, s.offset + s.length)),
      release: () => this.arena.give(copy),
    };
  }
}
