// Aggregation math: pure functions over named float32 tensors (HF key names -> HostTensor). No I/O, no gRPC.
//
// Accumulations run in float64 and round to float32 once at the end.
import type { HostTensor } from '@fedsam/shared/safetensors';
import { backToBack, sameShape } from '@fedsam/shared/transfer';
import { foldArena, type FoldArena } from './foldArena.ts';

export type NamedTensors = Map<string, HostTensor>;

export class AggregationError extends Error {
  override name = 'AggregationError';
}

function f32(t: HostTensor, name: string): Float32Array {
  if (!(t.data instanceof Float32Array)) throw new AggregationError(`tensor "${name}" is ${t.dtype}, expected float32`);
  return t.data;
}

/** Deep copy (float32). */
export function cloneTensors(src: NamedTensors): NamedTensors {
  const out: NamedTensors = new Map();
  for (const [name, t] of src) out.set(name, { dtype: 'float32', shape: [...t.shape], data: new Float32Array(f32(t, name)) });
  return out;
}

export function zerosLike(src: NamedTensors): NamedTensors {
  const out: NamedTensors = new Map();
  for (const [name, t] of src) out.set(name, { dtype: 'float32', shape: [...t.shape], data: new Float32Array(t.data.length) });
  return out;
}

function checkLayout(layout: NamedTensors, update: NamedTensors, what: string): void {
  if (update.size !== layout.size) throw new AggregationError(`${what}: ${update.size} tensors, expected ${layout.size}`);
  for (const [name, t] of layout) {
    const u = update.get(name);
    if (!u) throw new AggregationError(`${what}: tensor "${name}" is missing`);
    if (!sameShape(u.shape, t.shape)) throw new AggregationError(`${what}: tensor "${name}" has shape [${u.shape}], expected [${t.shape}]`);
    f32(u, name);
  }
}

interface Slot {
  name: string;
  shape: number[];
  offset: number;
  length: number;
}

/** Number of values in all tensors together. */
export function valueCount(tensors: NamedTensors): number {
  let n = 0;
  for (const t of tensors.values()) n += t.data.length;
  return n;
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

/** FedAvg: mean of the updates weighted by their number of examples (Flower's aggregate()). */
export function fedAvg(updates: ReadonlyArray<{ weights: NamedTensors; numExamples: number }>): NamedTensors {
  if (updates.length === 0) throw new AggregationError('no update to average');
  const ws = new WeightedSum(updates[0]!.weights);
  for (const u of updates) ws.add(u.weights, u.numExamples);
  return ws.mean();
}

// ---------------------------------------------------------------------------------------------------------------
// FedOpt (FedAdam, FedYogi): server-side adaptive optimizers over the pseudo-gradient (Reddi et al. 2020), with
// Flower's semantics (flwr/server/strategy/fedadam.py, fedyogi.py):
//   delta = aggregated - current
//   m = beta_1 m + (1 - beta_1) delta
//   adam: v = beta_2 v + (1 - beta_2) delta^2
//         eta_norm = eta sqrt(1 - beta_2^(round+1)) / (1 - beta_1^(round+1))   (bias correction as Flower does it)
//   yogi: v = v - (1 - beta_2) delta^2 sign(v - delta^2)
//         eta_norm = eta                                                         (Flower's FedYogi: no correction)
//   new = current + eta_norm m / (sqrt(v) + tau)
// m and v start at zero.

export interface FedOptParams {
  eta: number;
  beta_1: number;
  beta_2: number;
  tau: number;
}

export interface FedOptMoments {
  m: NamedTensors;
  v: NamedTensors;
}

export function fedOptStep(
  kind: 'adam' | 'yogi',
  current: NamedTensors,
  aggregated: NamedTensors,
  moments: FedOptMoments | undefined,
  p: FedOptParams,
  round: number,
  opts: { inPlaceMoments?: boolean; out?: Float32Array } = {},
): { weights: NamedTensors; moments: FedOptMoments } {
  checkLayout(current, aggregated, 'aggregated weights');
  const fresh = !moments;
  const m0 = moments?.m ?? zerosLike(current);
  const v0 = moments?.v ?? zerosLike(current);
  checkLayout(current, m0, 'first moment');
  checkLayout(current, v0, 'second moment');
  const { eta, beta_1: b1, beta_2: b2, tau } = p;
  const etaNorm = kind === 'adam' ? (eta * Math.sqrt(1 - Math.pow(b2, round + 1))) / (1 - Math.pow(b1, round + 1)) : eta;
  // Moments are updated in place when they are new or the caller owns them (the strategy does).
  const inPlace = fresh || opts.inPlaceMoments === true;
  const weights: NamedTensors = new Map();
  const m: NamedTensors = inPlace ? m0 : cloneTensors(m0);
  const v: NamedTensors = inPlace ? v0 : cloneTensors(v0);
  // The new weights go into `out` (layout order) when given, else into new arrays.
  if (opts.out && opts.out.length !== valueCount(current)) throw new AggregationError(`output buffer has ${opts.out.length} values, expected ${valueCount(current)}`);
  let offset = 0;
  for (const [name, cur] of current) {
    const x = cur.data as Float32Array;
    const agg = aggregated.get(name)!.data as Float32Array;
    const mm = m.get(name)!.data as Float32Array;
    const vv = v.get(name)!.data as Float32Array;
    const w = opts.out ? opts.out.subarray(offset, offset + x.length) : new Float32Array(x.length);
    offset += x.length;
    if (kind === 'adam') adamLoop(x, agg, mm, vv, w, b1, b2, etaNorm, tau);
    else yogiLoop(x, agg, mm, vv, w, b1, b2, etaNorm, tau);
    weights.set(name, { dtype: 'float32', shape: [...cur.shape], data: w });
  }
  return { weights, moments: { m, v } };
}

// The new weights use the stored (float32) moments, as the next round will.
function adamLoop(x: Float32Array, agg: Float32Array, m: Float32Array, v: Float32Array, w: Float32Array, b1: number, b2: number, etaNorm: number, tau: number): void {
  for (let i = 0; i < x.length; i++) {
    const d = agg[i]! - x[i]!;
    m[i] = b1 * m[i]! + (1 - b1) * d;
    v[i] = b2 * v[i]! + (1 - b2) * d * d;
    w[i] = x[i]! + (etaNorm * m[i]!) / (Math.sqrt(v[i]!) + tau);
  }
}

function yogiLoop(x: Float32Array, agg: Float32Array, m: Float32Array, v: Float32Array, w: Float32Array, b1: number, b2: number, etaNorm: number, tau: number): void {
  for (let i = 0; i < x.length; i++) {
    const d = agg[i]! - x[i]!;
    const d2 = d * d;
    m[i] = b1 * m[i]! + (1 - b1) * d;
    v[i] = v[i]! - (1 - b2) * d2 * Math.sign(v[i]! - d2);
    w[i] = x[i]! + (etaNorm * m[i]!) / (Math.sqrt(v[i]!) + tau);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Robust aggregation (unweighted, like Flower's FedMedian / FedTrimmedAvg). Both need every update at once.

/** Rearrange a[lo..hi] so that a[k] holds the value of rank k, smaller values before it, larger after. */
function select(a: Float64Array, lo: number, hi: number, k: number): void {
  while (hi > lo) {
    if (hi - lo < 16) {
      for (let i = lo + 1; i <= hi; i++) {
        const x = a[i]!;
        let j = i - 1;
        while (j >= lo && a[j]! > x) {
          a[j + 1] = a[j]!;
          j--;
        }
        a[j + 1] = x;
      }
      return;
    }
    // median of three pivot, Hoare partition
    const mid = (lo + hi) >>> 1;
    const p = Math.max(Math.min(a[lo]!, a[mid]!), Math.min(Math.max(a[lo]!, a[mid]!), a[hi]!));
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < p) i++;
      while (a[j]! > p) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i] = a[j]!;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return;
  }
}

const BLOCK = 2048;

/** Apply `reduce` to the K values of every coordinate (gathered block by block, so reads stay sequential). */
function coordinateWise(updates: ReadonlyArray<NamedTensors>, reduce: (block: Float64Array, base: number, k: number) => number): NamedTensors {
  if (updates.length === 0) throw new AggregationError('no update to aggregate');
  const first = updates[0]!;
  for (let k = 1; k < updates.length; k++) checkLayout(first, updates[k]!, `update ${k}`);
  const K = updates.length;
  const block = new Float64Array(K * BLOCK);
  const out: NamedTensors = new Map();
  for (const [name, t] of first) {
    const cols = updates.map((u) => u.get(name)!.data as Float32Array);
    const n = t.data.length;
    const d = new Float32Array(n);
    for (let start = 0; start < n; start += BLOCK) {
      const len = Math.min(BLOCK, n - start);
      for (let k = 0; k < K; k++) {
        const c = cols[k]!;
        for (let i = 0; i < len; i++) block[i * K + k] = c[start + i]!;
      }
      for (let i = 0; i < len; i++) d[start + i] = reduce(block, i * K, K);
    }
    out.set(name, { dtype: 'float32', shape: [...t.shape], data: d });
  }
  return out;
}

/** Coordinate-wise median (numpy's: mean of the two middle values for even K). */
export function coordinateMedian(updates: ReadonlyArray<NamedTensors>): NamedTensors {
  return coordinateWise(updates, (v, b, K) => {
    const h = b + (K >> 1);
    select(v, b, b + K - 1, h);
    if (K % 2 === 1) return v[h]!;
    let below = v[b]!; // largest value left of rank K/2 = rank K/2 - 1
    for (let i = b + 1; i < h; i++) if (v[i]! > below) below = v[i]!;
    return (below + v[h]!) / 2;
  });
}

/**
 * Coordinate-wise trimmed mean (scipy's trim_mean as Flower's FedTrimmedAvg uses it): drop floor(beta K) values at
 * each end, average the rest.
 */
export function trimmedMean(updates: ReadonlyArray<NamedTensors>, beta: number): NamedTensors {
  const K = updates.length;
  if (!(beta >= 0 && beta < 0.5)) throw new AggregationError(`trimmed mean beta must be in [0, 0.5), got ${beta}`);
  const cut = Math.floor(beta * K);
  if (K - 2 * cut <= 0) throw new AggregationError(`trimmed mean: beta ${beta} trims all ${K} updates`);
  const keep = K - 2 * cut;
  return coordinateWise(updates, (v, b, n) => {
    if (cut > 0) {
      select(v, b, b + n - 1, b + cut); // v[b, b+cut) = the cut smallest
      select(v, b + cut, b + n - 1, b + n - cut - 1); // v(b+n-cut-1, b+n) = the cut largest
    }
    let sum = 0;
    for (let i = b + cut; i < b + n - cut; i++) sum += v[i]!;
    return sum / keep;
  });
}

/** Weighted mean of scalar metrics: per key, sum n_i m_i / sum n_i over the results that report it. */
export function weightedMetrics(results: ReadonlyArray<{ numExamples: number; metrics: Record<string, number> }>): Record<string, number> {
  const sums = new Map<string, { s: number; n: number }>();
  for (const r of results) {
    for (const [k, v] of Object.entries(r.metrics)) {
      if (!Number.isFinite(v)) continue;
      const e = sums.get(k) ?? { s: 0, n: 0 };
      e.s += r.numExamples * v;
      e.n += r.numExamples;
      sums.set(k, e);
    }
  }
  const out: Record<string, number> = {};
  for (const [k, { s, n }] of sums) if (n > 0) out[k] = s / n;
  return out;
}
