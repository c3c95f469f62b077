// Aggregation math: pure functions over named float32 tensors (HF key names -> HostTensor). No I/O, no gRPC.
//
// Accumulations run in float64 and round to float32 once at the end.
import type { HostTensor } from '@fedsam/shared/safetensors';
import { backToBack, sameShape } from '@fedsam/shared/transfer';
import type { BufferPool } from '../bufferPool.ts';

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

// The hot loops of FedAvg, one small monomorphic function each. Measured on this machine's kind (4M parameters):
// a pass costs ~4-5 ms and is bound by memory traffic, so the fold makes as few passes as it can (see WeightedSum).

/** acc[i] = w * x[i] */
function assignScaled(acc: Float64Array, x: Float32Array, w: number): void {
  const n = x.length;
  for (let i = 0; i < n; i++) acc[i] = w * x[i]!;
}

/** acc[i] += w * x[i] */
function axpy(acc: Float64Array, x: Float32Array, w: number): void {
  const n = x.length;
  for (let i = 0; i < n; i++) acc[i] += w * x[i]!;
}

// The mean multiplies by 1 / total: a float64 division per value costs as much as the rest of the pass, and the
// product differs from the quotient by at most 1 float64 ulp before the rounding to float32.

/** out[i] = (acc[i] + w * x[i]) * inv, rounded to float32 (the last fold and the mean in one pass). */
function foldAndScale(out: Float32Array, acc: Float64Array, x: Float32Array, w: number, inv: number): void {
  const n = x.length;
  for (let i = 0; i < n; i++) out[i] = (acc[i]! + w * x[i]!) * inv;
}

/** out[i] = w * x[i] * inv (a round with a single update). */
function scale(out: Float32Array, x: Float32Array, w: number, inv: number): void {
  const n = x.length;
  for (let i = 0; i < n; i++) out[i] = w * x[i]! * inv;
}

interface Slot {
  name: string;
  shape: number[];
  offset: number;
  length: number;
}

/**
 * One update's float32 values in layout order: a single view when its tensors lie back to back in one buffer in
 * that order (what decodePayload gives for a payload in the server's order), else one array per tensor.
 */
type UpdateValues = { flat: Float32Array } | { parts: Float32Array[] };

/**
 * Streaming weighted mean: fold updates in one at a time (one flat float64 accumulator, O(model) memory whatever
 * the number of updates), then `mean()` = sum_i w_i x_i * (1 / sum_i w_i) rounded to float32.
 *
 * Passes over memory, not arithmetic, set the cost, so: the first update is written, not added (no zeroing); the
 * newest update is held back and folded in by `mean()` in the same pass that divides and rounds (the step after
 * the last upload costs one pass). Contract: add() keeps a reference to the update's arrays until the next add()
 * or mean(); the caller must not modify them before then.
 */
export class WeightedSum {
  private readonly slots: Slot[] = [];
  private readonly size: number;
  /** Taken (from the pool) by the first fold: until then nothing is summed. */
  private acc: Float64Array | undefined;
  private held: { values: UpdateValues; weight: number; release: (() => void) | undefined } | undefined;
  private readonly out: Float32Array;
  private result: NamedTensors | undefined;
  private total = 0;
  private n = 0;

  constructor(private readonly layout: NamedTensors, private readonly pool?: BufferPool<Float64Array>) {
    let offset = 0;
    for (const [name, t] of layout) {
      this.slots.push({ name, shape: [...t.shape], offset, length: t.data.length });
      offset += t.data.length;
    }
    this.size = offset;
    // The output buffer that mean() writes, allocated and touched now (at round start) so that its page faults
    // (~6 ms for 16 MB here) are paid neither while an upload waits for its answer nor after the last one.
    this.out = new Float32Array(this.size);
    this.out.fill(0);
  }

  get count(): number {
    return this.n;
  }

  get totalWeight(): number {
    return this.total;
  }

  /** Fold in one update; `release` is called once its arrays are no longer read. */
  add(weights: NamedTensors, weight: number, release?: () => void): void {
    if (!(weight > 0) || !Number.isFinite(weight)) throw new AggregationError(`weight must be a positive finite number, got ${weight}`);
    if (this.result) throw new AggregationError('this sum is closed: mean() was already taken');
    checkLayout(this.layout, weights, 'update');
    const values = this.valuesOf(weights);
    if (this.held) {
      this.fold(this.held.values, this.held.weight);
      this.held.release?.();
    }
    this.held = { values, weight, release };
    this.total += weight;
    this.n++;
  }

  /** The weighted mean as float32 tensors (views of one buffer). Closes the sum (its accumulator goes back to the pool); later calls return the same tensors. */
  mean(): NamedTensors {
    if (this.result) return this.result;
    const held = this.held;
    if (this.n === 0 || !held) throw new AggregationError('no update to average');
    const out = this.out;
    const inv = 1 / this.total;
    const acc = this.acc;
    this.each(held.values, (x, o) => {
      const y = out.subarray(o, o + x.length);
      if (acc) foldAndScale(y, acc.subarray(o, o + x.length), x, held.weight, inv);
      else scale(y, x, held.weight, inv);
    });
    this.held = undefined;
    held.release?.();
    if (acc) this.pool?.give(acc);
    this.acc = undefined;
    const result: NamedTensors = new Map();
    for (const s of this.slots) result.set(s.name, { dtype: 'float32', shape: [...s.shape], data: out.subarray(s.offset, s.offset + s.length) });
    this.result = result;
    return result;
  }

  private fold(values: UpdateValues, w: number): void {
    const first = !this.acc;
    const acc = (this.acc ??= this.pool ? this.pool.take(this.size) : new Float64Array(this.size));
    this.each(values, (x, o) => {
      const a = acc.subarray(o, o + x.length);
      if (first) assignScaled(a, x, w);
      else axpy(a, x, w);
    });
  }

  private each(values: UpdateValues, f: (x: Float32Array, offset: number) => void): void {
    if ('flat' in values) f(values.flat, 0);
    else for (let i = 0; i < this.slots.length; i++) f(values.parts[i]!, this.slots[i]!.offset);
  }

  private valuesOf(weights: NamedTensors): UpdateValues {
    const parts = this.slots.map((s) => {
      const x = weights.get(s.name)!.data as Float32Array;
      if (x.length !== s.length) throw new AggregationError(`update: tensor "${s.name}" has ${x.length} values, expected ${s.length}`);
      return x;
    });
    const flat = backToBack(parts);
    return flat ? { flat } : { parts };
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
  opts: { inPlaceMoments?: boolean } = {},
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
  for (const [name, cur] of current) {
    const x = cur.data as Float32Array;
    const agg = aggregated.get(name)!.data as Float32Array;
    const mm = m.get(name)!.data as Float32Array;
    const vv = v.get(name)!.data as Float32Array;
    const w = new Float32Array(x.length);
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
