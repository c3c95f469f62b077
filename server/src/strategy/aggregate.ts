// Aggregation math, like Flower's aggregate.py: pure functions over named float32 tensors (HF key names ->
// HostTensor), no buffers kept, no I/O. Accumulations run in float64 and round to float32 once at the end.
// The server's FedAvg runs the same weighted mean streaming (weightedSum.ts, in WebAssembly); fedAvg() here is its
// reference.
import type { HostTensor } from '@fedsam/shared/safetensors';
import { sameShape } from '@fedsam/shared/transfer/manifest';

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

/** Same names and shapes as `layout`, float32. */
export function checkLayout(layout: NamedTensors, update: NamedTensors, what: string): void {
  if (update.size !== layout.size) throw new AggregationError(`${what}: ${update.size} tensors, expected ${layout.size}`);
  for (const [name, t] of layout) {
    const u = update.get(name);
    if (!u) throw new AggregationError(`${what}: tensor "${name}" is missing`);
    if (!sameShape(u.shape, t.shape)) throw new AggregationError(`${what}: tensor "${name}" has shape [${u.shape}], expected [${t.shape}]`);
    f32(u, name);
  }
}

/** Number of values in all tensors together. */
export function valueCount(tensors: NamedTensors): number {
  let n = 0;
  for (const t of tensors.values()) n += t.data.length;
  return n;
}

/**
 * FedAvg: the mean of the updates weighted by their number of examples (Flower's aggregate()), summed in float64
 * left to right and rounded once: the same values the streaming WeightedSum gives.
 */
export function fedAvg(updates: ReadonlyArray<{ weights: NamedTensors; numExamples: number }>): NamedTensors {
  if (updates.length === 0) throw new AggregationError('no update to average');
  const first = updates[0]!.weights;
  let total = 0;
  updates.forEach((u, k) => {
    if (!(u.numExamples > 0) || !Number.isFinite(u.numExamples)) throw new AggregationError(`weight must be a positive finite number, got ${u.numExamples}`);
    checkLayout(first, u.weights, `update ${k}`);
    total += u.numExamples;
  });
  const scale = 1 / total;
  const out: NamedTensors = new Map();
  for (const [name, t] of first) {
    const xs = updates.map((u) => u.weights.get(name)!.data as Float32Array);
    const d = new Float32Array(t.data.length);
    for (let i = 0; i < d.length; i++) {
      let s = 0;
      for (let k = 0; k < xs.length; k++) s += updates[k]!.numExamples * xs[k]![i]!;
      d[i] = s * scale;
    }
    out.set(name, { dtype: 'float32', shape: [...t.shape], data: d });
  }
  return out;
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
// FedAvgM: FedAvg with server momentum (Hsu et al. 2019), with Flower's semantics (flwr/server/strategy/fedavgm.py):
//   pseudo_gradient = current - aggregated          (updates are the opposite of gradients)
//   momentum: m = server_momentum m + pseudo_gradient (m = pseudo_gradient in the first round)
//   new = current - server_learning_rate m             (SGD; without momentum, m = pseudo_gradient)

export interface FedAvgMParams {
  server_learning_rate: number;
  server_momentum: number;
}

export function fedAvgMStep(
  current: NamedTensors,
  aggregated: NamedTensors,
  momentum: NamedTensors | undefined,
  p: FedAvgMParams,
  opts: { out?: Float32Array } = {},
): { weights: NamedTensors; momentum: NamedTensors | undefined } {
  checkLayout(current, aggregated, 'aggregated weights');
  if (momentum) checkLayout(current, momentum, 'momentum');
  if (opts.out && opts.out.length !== valueCount(current)) throw new AggregationError(`output buffer has ${opts.out.length} values, expected ${valueCount(current)}`);
  const { server_learning_rate: lr, server_momentum: beta } = p;
  // The momentum buffer is the strategy's: updated in place from the second round on.
  const m: NamedTensors | undefined = beta > 0 ? (momentum ?? zerosLike(current)) : undefined;
  const first = !momentum;
  const weights: NamedTensors = new Map();
  let offset = 0;
  for (const [name, cur] of current) {
    const x = cur.data as Float32Array;
    const agg = aggregated.get(name)!.data as Float32Array;
    const w = opts.out ? opts.out.subarray(offset, offset + x.length) : new Float32Array(x.length);
    offset += x.length;
    const mm = m?.get(name)!.data as Float32Array | undefined;
    for (let i = 0; i < x.length; i++) {
      const g = Math.fround(x[i]! - agg[i]!);
      let step = g;
      if (mm) {
        mm[i] = first ? g : beta * mm[i]! + g;
        step = mm[i]!; // the stored (float32) momentum, as the next round reads it
      }
      w[i] = x[i]! - lr * step;
    }
    weights.set(name, { dtype: 'float32', shape: [...cur.shape], data: w });
  }
  return { weights, momentum: m };
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

/** Weighted mean of scalar metrics: per key, sum w_i m_i / sum w_i over the results that report it. */
export function weightedMetrics(results: ReadonlyArray<{ weight: number; metrics: Record<string, number> }>): Record<string, number> {
  const sums = new Map<string, { s: number; n: number }>();
  for (const r of results) {
    for (const [k, v] of Object.entries(r.metrics)) {
      if (!Number.isFinite(v)) continue;
      const e = sums.get(k) ?? { s: 0, n: 0 };
      e.s += r.weight * v;
      e.n += r.weight;
      sums.set(k, e);
    }
  }
  const out: Record<string, number> = {};
  for (const [k, { s, n }] of sums) if (n > 0) out[k] = s / n;
  return out;
}
