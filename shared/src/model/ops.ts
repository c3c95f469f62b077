// Layers of the SAM graph as tfjs ops, shaped by what is fast on tfjs-wasm (single thread, XNNPACK):
//   - A BatchMatMul runs on XNNPACK only when it is 2-D (batch 1) without transpose flags; batched or transposed
//     products fall back to a naive scalar loop (10-100x slower). Every product here is 2-D and flag-free.
//   - XNNPACK packs the right-hand operand at every call with a new tensor (~15 ns per element, 2.5x a transpose),
//     so product() picks C = A·B or C = (Bᵀ·Aᵀ)ᵀ by a small cost model (transposes vs packing).
//   - GELU and column sums run as the JS kernels of kernels.ts (wasm and cpu).
// See docs/CONTRIBUTING.md, ../shared/notes/tfjs-wasm-performance.md and bench/README.md.
import * as tf from '@tensorflow/tfjs';
import { COL_SUM, COL_SUM2, ensureFastKernels, GELU, hasJsKernels } from './kernels.ts';

export type Weights = Map<string, tf.Tensor>;

/** Look a parameter up by its HF name; a missing name is a programming/config error worth a clear message. */
export function param(weights: Weights, name: string): tf.Tensor {
  const t = weights.get(name);
  if (!t) throw new Error(`missing model parameter ${name}`);
  return t;
}

// ---------------------------------------------------------------------------------------------------------------
// Products

/* eslint-disable @typescript-eslint/no-explicit-any */
// tf.customGrad's typing wants a fixed arity; ours are 2- and 3-input ops.
const customGrad = tf.customGrad as unknown as (f: (...args: any[]) => any) => unknown;

// Cost model (ns per element / per multiply-add on tfjs-wasm; only ratios matter).
const T_NS = 6;
const PACK_NS = 15;

function transposeCost(r: number, c: number): number {
  return r === 1 || c === 1 ? 0 : T_NS * r * c;
}

/** 2-D transpose; a vector's transpose is a reshape. */
export function t2(x: tf.Tensor): tf.Tensor2D {
  const [r, c] = x.shape;
  return (r === 1 || c === 1 ? tf.reshape(x, [c, r]) : tf.transpose(x)) as tf.Tensor2D;
}

/**
 * op(a)·op(b) for 2-D tensors (op = transpose when the flag is set), using only flag-free XNNPACK products:
 * either op(a)·op(b) with explicit transposes, or (op(b)ᵀ·op(a)ᵀ)ᵀ, whichever moves fewer bytes.
 * Not differentiable by itself (used inside gradients and by matMul2d/linear).
 */
export function product(a: tf.Tensor, b: tf.Tensor, ta = false, tb = false): tf.Tensor2D {
  const [ar, ac] = a.shape;
  const [br, bc] = b.shape;
  const M = ta ? ac : ar;
  const K = ta ? ar : ac;
  const N = tb ? br : bc;
  if ((tb ? bc : br) !== K) throw new Error(`product: inner sizes differ ([${a.shape}]${ta ? 'ᵀ' : ''} x [${b.shape}]${tb ? 'ᵀ' : ''})`);
  const direct = (ta ? transposeCost(ar, ac) : 0) + (tb ? transposeCost(br, bc) : 0) + PACK_NS * K * N;
  const swapped = (tb ? 0 : transposeCost(br, bc)) + (ta ? 0 : transposeCost(ar, ac)) + PACK_NS * K * M + transposeCost(N, M);
  const r = tf.tidy(() => {
    if (direct <= swapped) return tf.matMul((ta ? t2(a) : a) as tf.Tensor2D, (tb ? t2(b) : b) as tf.Tensor2D);
    return t2(tf.matMul((tb ? b : t2(b)) as tf.Tensor2D, (ta ? a : t2(a)) as tf.Tensor2D));
  });
  return r as tf.Tensor2D;
}

function makeMatMul(ta: boolean, tb: boolean) {
  return customGrad(((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
    save([a, b]);
    return {
      value: product(a, b, ta, tb),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sa, sb] = saved;
        if (!ta && !tb) return [product(dy, sb, false, true), product(sa, dy, true, false)];
        if (!ta && tb) return [product(dy, sb, false, false), product(dy, sa, true, false)];
        if (ta && !tb) return [product(sb, dy, false, true), product(sa, dy, false, false)];
        return [product(sb, dy, true, true), product(dy, sa, true, true)];
      },
    };
  })) as (a: tf.Tensor, b: tf.Tensor) => tf.Tensor2D;
}
const mm = makeMatMul(false, false);
const mmNT = makeMatMul(false, true);
const mmTN = makeMatMul(true, false);
const mmTT = makeMatMul(true, true);

/** Differentiable op(a)·op(b) for 2-D tensors (see product()). */
export function matMul2d(a: tf.Tensor, b: tf.Tensor, transposeA = false, transposeB = false): tf.Tensor2D {
  ensureFastKernels();
  if (a.rank !== 2 || b.rank !== 2) throw new Error(`matMul2d wants 2-D tensors, got [${a.shape}] and [${b.shape}]`);
  return (transposeA ? (transposeB ? mmTT : mmTN) : transposeB ? mmNT : mm)(a, b);
}

/**
 * Transposed copies of frozen weights, kept across calls: a product with a cached right-hand operand also keeps
 * XNNPACK's packed copy of it (packing a fresh [768, 3072] operand costs ~35 ms on wasm). Opt-in, for weights
 * that do not change (the vision encoder); the owner calls dispose() (the cached tensors count in tf.memory()).
 */
export class FrozenWeightCache {
  private readonly cache = new Map<tf.Tensor, tf.Tensor2D>();
  /** wᵀ for a 2-D w. */
  transposed(w: tf.Tensor): tf.Tensor2D {
    let r = this.cache.get(w);
    if (!r || r.isDisposed) {
      r = tf.keep(t2(w));
      this.cache.set(w, r);
    }
    return r;
  }
  get size(): number {
    return this.cache.size;
  }
  dispose(): void {
    for (const t of this.cache.values()) t.dispose();
    this.cache.clear();
  }
}

/** x [N, in]·Wᵀ (+ b) for a frozen layer, not differentiable; uses the cache when given. */
export function linearFrozen(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor, cache?: FrozenWeightCache): tf.Tensor2D {
  ensureFastKernels();
  return tf.tidy(() => {
    const y = cache ? tf.matMul(x as tf.Tensor2D, cache.transposed(w)) : product(x, w, false, true);
    return (b ? tf.add(y, b) : y) as tf.Tensor2D;
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Reductions and bias

/** Σ over rows of a 2-D tensor -> [C]. Not differentiable by itself. */
export function colSum(x: tf.Tensor): tf.Tensor1D {
  if (x.rank !== 2) throw new Error('colSum wants a 2-D tensor');
  if (x.shape[0] === 1) return tf.reshape(x, [x.shape[1]!]) as tf.Tensor1D;
  if (hasJsKernels()) return tf.engine().runKernel(COL_SUM, { x }) as tf.Tensor1D;
  return tf.sum(x, 0) as tf.Tensor1D;
}

/** Σ over rows of a⊙b (2-D, same shape) -> [C]. Not differentiable by itself. */
export function colSumProd(a: tf.Tensor, b: tf.Tensor): tf.Tensor1D {
  if (hasJsKernels()) return tf.engine().runKernel(COL_SUM2, { a, b }) as tf.Tensor1D;
  return tf.tidy(() => tf.sum(tf.mul(a, b), 0) as tf.Tensor1D);
}

/** x [N, C] + b [C], with the bias gradient as a column sum. */
const biasAdd2d = customGrad(((x: tf.Tensor, b: tf.Tensor) => ({
  value: tf.add(x, b),
  gradFunc: (dy: tf.Tensor) => [dy.clone(), colSum(dy)],
}))) as (x: tf.Tensor, b: tf.Tensor) => tf.Tensor;

/** x [..., C] + b [C]; differentiable (bias gradient without a slow axis-0 reduction). */
export function biasAdd(x: tf.Tensor, b: tf.Tensor): tf.Tensor {
  ensureFastKernels();
  const C = x.shape[x.rank - 1];
  if (x.rank === 2) return biasAdd2d(x, b);
  return tf.tidy(() => tf.reshape(biasAdd2d(tf.reshape(x, [-1, C]), b), x.shape));
}

// ---------------------------------------------------------------------------------------------------------------
// Linear layers

/**
 * y = x·Wᵀ + b for x [N, in] with W in PyTorch/HF layout [out, in].
 * Backward: dx = dy·W, dW = dyᵀ·x (cost-model product), db = column sum of dy.
 */
const linear2dBias = customGrad(((x: tf.Tensor, w: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
  save([x, w]);
  return {
    value: tf.tidy(() => tf.add(product(x, w, false, true), b)),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sx, sw] = saved;
      return [product(dy, sw), product(dy, sx, true, false), colSum(dy)];
    },
  };
})) as (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => tf.Tensor;

const linear2dNoBias = customGrad(((x: tf.Tensor, w: tf.Tensor, save: tf.GradSaveFunc) => {
  save([x, w]);
  return {
    value: product(x, w, false, true),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sx, sw] = saved;
      return [product(dy, sw), product(dy, sx, true, false)];
    },
  };
})) as (x: tf.Tensor, w: tf.Tensor) => tf.Tensor;

/** HF nn.Linear on the last axis of x (any rank); W [out, in], optional bias [out]. */
export function linear(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor): tf.Tensor {
  ensureFastKernels();
  const inDim = x.shape[x.rank - 1];
  const outDim = w.shape[0];
  const lead = x.shape.slice(0, -1);
  return tf.tidy(() => {
    const x2 = x.rank === 2 ? x : tf.reshape(x, [-1, inDim]);
    const y = b ? linear2dBias(x2, w, b) : linear2dNoBias(x2, w);
    return x.rank === 2 ? y : tf.reshape(y, [...lead, outDim]);
  });
}

/** Linear layer by HF prefix: `${prefix}.weight`, `${prefix}.bias`. */
export function linearP(weights: Weights, prefix: string, x: tf.Tensor): tf.Tensor {
  return linear(x, param(weights, `${prefix}.weight`), weights.get(`${prefix}.bias`));
}

// ---------------------------------------------------------------------------------------------------------------
// Normalisation and activations

/**
 * LayerNorm over the last axis of a 2-D tensor, with a hand-written backward:
 * dx = r·(ĝ - mean(ĝ) - x̂·mean(ĝ⊙x̂)) with ĝ = dy⊙γ, r = 1/σ; dγ = Σrows dy⊙x̂; dβ = Σrows dy.
 */
function makeLayerNorm2d(eps: number) {
  return customGrad(((x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, save: tf.GradSaveFunc) => {
    const mean = tf.mean(x, 1, true);
    const centered = tf.sub(x, mean);
    const r = tf.rsqrt(tf.add(tf.mean(tf.square(centered), 1, true), eps));
    const xhat = tf.mul(centered, r);
    save([xhat, r, gamma]);
    return {
      value: tf.add(tf.mul(xhat, gamma), beta),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sxhat, sr, sg] = saved;
        const dx = tf.tidy(() => {
          const g = tf.mul(dy, sg);
          const m1 = tf.mean(g, 1, true);
          const m2 = tf.mean(tf.mul(g, sxhat), 1, true);
          return tf.mul(tf.sub(tf.sub(g, m1), tf.mul(sxhat, m2)), sr);
        });
        return [dx, colSumProd(dy, sxhat), colSum(dy)];
      },
    };
  })) as (x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) => tf.Tensor;
}
const layerNorm2dByEps = new Map<number, (x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) => tf.Tensor>();

/** LayerNorm over the last axis (HF nn.LayerNorm, and SamLayerNorm channels_first on NHWC data). */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor {
  ensureFastKernels();
  let ln = layerNorm2dByEps.get(eps);
  if (!ln) layerNorm2dByEps.set(eps, (ln = makeLayerNorm2d(eps)));
  const f = ln;
  return tf.tidy(() => {
    const C = x.shape[x.rank - 1];
    const x2 = x.rank === 2 ? x : tf.reshape(x, [-1, C]);
    const y = f(x2, gamma, beta);
    return x.rank === 2 ? y : tf.reshape(y, x.shape);
  });
}

export function layerNormP(weights: Weights, prefix: string, x: tf.Tensor, eps: number): tf.Tensor {
  return layerNorm(x, param(weights, `${prefix}.weight`), param(weights, `${prefix}.bias`), eps);
}

const SQRT1_2 = Math.SQRT1_2;
/** Exact (erf) GELU, as torch.nn.GELU() / HF ACT2FN['gelu']; a table-based JS kernel on wasm and cpu. */
export function gelu(x: tf.Tensor): tf.Tensor {
  ensureFastKernels();
  if (hasJsKernels() && x.dtype === 'float32') return tf.engine().runKernel(GELU, { x }) as tf.Tensor;
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, SQRT1_2)), 1)));
}

export function activation(name: string, x: tf.Tensor): tf.Tensor {
  switch (name) {
    case 'gelu': return gelu(x);
    case 'relu': return tf.relu(x);
    default: throw new Error(`unsupported activation ${name}`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Convolutions as products

/**
 * A 2×2 stride-2 ConvTranspose2d in "blocked" layout: x [N, in] (one row per input pixel) -> [4N, out], rows ordered
 * (pixel, kh, kw). Per-pixel ops (LayerNorm, GELU, another such conv) commute with the layout, so a chain of them
 * needs one depth-to-space rearrangement at the end (or none, for a permutation-invariant loss).
 */
export function convTranspose2x2Blocked(x: tf.Tensor2D, w: tf.Tensor, b: tf.Tensor): tf.Tensor2D {
  const [cin, out] = w.shape;
  return tf.tidy(() => {
    const wm = tf.reshape(tf.transpose(w, [0, 2, 3, 1]), [cin, 4 * out]); // [in, (kh, kw, out)]
    return biasAdd(tf.reshape(matMul2d(x, wm), [-1, out]), b) as tf.Tensor2D;
  });
}

/** A k×k stride-k Conv2d (patch embedding, mask embedding) on NHWC input as patchify + matMul. HF weight [out, in, k, k]. */
export function convPatchify(x: tf.Tensor4D, w: tf.Tensor, b: tf.Tensor | undefined, k: number): tf.Tensor4D {
  const [B, H, W, C] = x.shape;
  const out = w.shape[0]!;
  const h = Math.floor(H / k);
  const ww = Math.floor(W / k);
  return tf.tidy(() => {
    const xc = H === h * k && W === ww * k ? x : tf.slice(x, [0, 0, 0, 0], [B, h * k, ww * k, C]);
    // [B·h, k, w, k·C] -> [B·h, w, k(y), k(x)·C] -> rows of (ky, kx, c)
    const p = tf.transpose(tf.reshape(xc, [B * h, k, ww, k * C]), [0, 2, 1, 3]);
    const rows = tf.reshape(p, [B * h * ww, k * k * C]);
    // weight [out, in, ky, kx] -> [out, ky, kx, in] to match the row order
    const wm = tf.reshape(tf.transpose(w, [0, 2, 3, 1]), [out, k * k * C]);
    return tf.reshape(linear(rows, wm, b), [B, h, ww, out]) as tf.Tensor4D;
  });
}

/** NCHW <-> NHWC */
export const toNHWC = (x: tf.Tensor4D): tf.Tensor4D => tf.transpose(x, [0, 2, 3, 1]);
export const toNCHW = (x: tf.Tensor4D): tf.Tensor4D => tf.transpose(x, [0, 3, 1, 2]);
