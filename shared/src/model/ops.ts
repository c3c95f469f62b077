// Linear-algebra building blocks for the SAM graph.
// On tfjs-wasm, matMul with transposeA/transposeB is 8–15x slower than an explicit transpose + plain matMul,
// and tfjs's built-in matMul gradient uses those flags (../shared/notes/tfjs-wasm-performance.md). Every product
// here therefore goes through custom-gradient ops whose backward passes use explicit transposes only.
import * as tf from '@tensorflow/tfjs';

export type Weights = Map<string, tf.Tensor>;

/** Look a parameter up by its HF name; a missing name is a programming/config error worth a clear message. */
export function param(weights: Weights, name: string): tf.Tensor {
  const t = weights.get(name);
  if (!t) throw new Error(`missing model parameter ${name}`);
  return t;
}

// tf.customGrad's typing wants a fixed arity; ours are 2- and 3-input ops.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const customGrad = tf.customGrad as unknown as (f: (...args: any[]) => any) => unknown;

function swapLast2(x: tf.Tensor): tf.Tensor {
  const r = x.rank;
  if (r === 2) return tf.transpose(x);
  const perm = [...Array(r).keys()];
  perm[r - 1] = r - 2;
  perm[r - 2] = r - 1;
  return tf.transpose(x, perm);
}

/**
 * C = A·B for rank-2 or batched rank-3 tensors (same batch size), with a backward pass of
 * dA = dC·Bᵀ and dB = Aᵀ·dC built from explicit transposes.
 */
export const matMul = customGrad(((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
  save([a, b]);
  return {
    value: tf.matMul(a as tf.Tensor3D, b as tf.Tensor3D),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sa, sb] = saved;
      return [tf.matMul(dy as tf.Tensor3D, swapLast2(sb) as tf.Tensor3D), tf.matMul(swapLast2(sa) as tf.Tensor3D, dy as tf.Tensor3D)];
    },
  };
})) as (a: tf.Tensor, b: tf.Tensor) => tf.Tensor;

/**
 * y = x·Wᵀ + b for x [N, in] with W in PyTorch/HF layout [out, in].
 * Backward: dx = dy·W (no transpose), dW = (xᵀ·dy)ᵀ or dyᵀ·x (whichever transposes fewer elements),
 * db = 1ᵀ·dy (a matMul: a row Sum over thousands of rows is slow on wasm).
 */
const linear2dBias = customGrad(((x: tf.Tensor, w: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
  save([x, w]);
  return {
    value: tf.add(tf.matMul(x as tf.Tensor2D, tf.transpose(w) as tf.Tensor2D), b),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sx, sw] = saved;
      return [tf.matMul(dy as tf.Tensor2D, sw as tf.Tensor2D), weightGrad(sx as tf.Tensor2D, dy as tf.Tensor2D), biasGrad(dy as tf.Tensor2D)];
    },
  };
})) as (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => tf.Tensor;

const linear2dNoBias = customGrad(((x: tf.Tensor, w: tf.Tensor, save: tf.GradSaveFunc) => {
  save([x, w]);
  return {
    value: tf.matMul(x as tf.Tensor2D, tf.transpose(w) as tf.Tensor2D),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sx, sw] = saved;
      return [tf.matMul(dy as tf.Tensor2D, sw as tf.Tensor2D), weightGrad(sx as tf.Tensor2D, dy as tf.Tensor2D)];
    },
  };
})) as (x: tf.Tensor, w: tf.Tensor) => tf.Tensor;

function weightGrad(x: tf.Tensor2D, dy: tf.Tensor2D): tf.Tensor {
  // dW [out,in] = dyᵀ·x; transpose whichever of dy [N,out] / x [N,in] is narrower.
  const out = dy.shape[1];
  const inp = x.shape[1];
  if (out <= inp) return tf.matMul(tf.transpose(dy), x);
  return tf.transpose(tf.matMul(tf.transpose(x), dy));
}

function biasGrad(dy: tf.Tensor2D): tf.Tensor {
  const n = dy.shape[0];
  if (n < 64) return tf.sum(dy, 0);
  return tf.reshape(tf.matMul(tf.ones([1, n]), dy), [dy.shape[1]]);
}

/** HF nn.Linear on the last axis of x (any rank); W [out, in], optional bias [out]. */
export function linear(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor): tf.Tensor {
  const inDim = x.shape[x.rank - 1];
  const outDim = w.shape[0];
  const lead = x.shape.slice(0, -1);
  const x2 = x.rank === 2 ? x : tf.reshape(x, [-1, inDim]);
  const y = b ? linear2dBias(x2, w, b) : linear2dNoBias(x2, w);
  return x.rank === 2 ? y : tf.reshape(y, [...lead, outDim]);
}

/** Linear layer by HF prefix: `${prefix}.weight`, `${prefix}.bias`. */
export function linearP(weights: Weights, prefix: string, x: tf.Tensor): tf.Tensor {
  return linear(x, param(weights, `${prefix}.weight`), weights.get(`${prefix}.bias`));
}

/** LayerNorm over the last axis (HF nn.LayerNorm, and SamLayerNorm channels_first on NHWC data). */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor {
  return tf.tidy(() => {
    const axis = x.rank - 1;
    const mean = tf.mean(x, axis, true);
    const centered = tf.sub(x, mean);
    const variance = tf.mean(tf.square(centered), axis, true);
    return tf.add(tf.mul(tf.mul(centered, tf.rsqrt(tf.add(variance, eps))), gamma), beta);
  });
}

export function layerNormP(weights: Weights, prefix: string, x: tf.Tensor, eps: number): tf.Tensor {
  return layerNorm(x, param(weights, `${prefix}.weight`), param(weights, `${prefix}.bias`), eps);
}

const SQRT1_2 = Math.SQRT1_2;
/** Exact (erf) GELU, as torch.nn.GELU() / HF ACT2FN['gelu']. */
export function gelu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, SQRT1_2)), 1)));
}

export function activation(name: string, x: tf.Tensor): tf.Tensor {
  switch (name) {
    case 'gelu': return gelu(x);
    case 'relu': return tf.relu(x);
    default: throw new Error(`unsupported activation ${name}`);
  }
}

/**
 * A 2×2 stride-2 ConvTranspose2d (HF weight [in, out, 2, 2]) on NHWC input, written as a matMul to 4·out channels
 * followed by a depth-to-space rearrangement: mathematically identical, and trainable on wasm (which lacks
 * Conv2DBackpropFilter) at matMul speed.
 */
export function convTranspose2x2(x: tf.Tensor4D, w: tf.Tensor, b: tf.Tensor): tf.Tensor4D {
  const [B, H, W, C] = x.shape;
  const out = w.shape[1]!;
  // [in, out, kh, kw] -> [in, kh, kw, out] -> [in, 4·out]; a linear layer wants [4·out, in].
  const wm = tf.transpose(tf.reshape(tf.transpose(w, [0, 2, 3, 1]), [C, 4 * out]));
  const bias = tf.tile(b, [4]);
  const y = linear(tf.reshape(x, [B * H * W, C]), wm, bias); // [BHW, (kh,kw,out)]
  const y6 = tf.reshape(y, [B, H, W, 2, 2, out]);
  return tf.reshape(tf.transpose(y6, [0, 1, 3, 2, 4, 5]), [B, 2 * H, 2 * W, out]) as tf.Tensor4D;
}

/** A k×k stride-k Conv2d (patch embedding, mask embedding) on NHWC input as patchify + matMul. HF weight [out, in, k, k]. */
export function convPatchify(x: tf.Tensor4D, w: tf.Tensor, b: tf.Tensor | undefined, k: number): tf.Tensor4D {
  const [B, H, W, C] = x.shape;
  const out = w.shape[0]!;
  const h = Math.floor(H / k);
  const ww = Math.floor(W / k);
  const xc = H === h * k && W === ww * k ? x : tf.slice(x, [0, 0, 0, 0], [B, h * k, ww * k, C]);
  // [B, h, k, w, k, C] -> [B, h, w, k(y), k(x), C] -> rows of (ky, kx, c)
  const p = tf.transpose(tf.reshape(xc, [B, h, k, ww, k, C]), [0, 1, 3, 2, 4, 5]);
  const rows = tf.reshape(p, [B * h * ww, k * k * C]);
  // weight [out, in, ky, kx] -> [out, ky, kx, in] to match the row order
  const wm = tf.reshape(tf.transpose(w, [0, 2, 3, 1]), [out, k * k * C]);
  return tf.reshape(linear(rows, wm, b), [B, h, ww, out]) as tf.Tensor4D;
}

/** NCHW <-> NHWC */
export const toNHWC = (x: tf.Tensor4D): tf.Tensor4D => tf.transpose(x, [0, 2, 3, 1]);
export const toNCHW = (x: tf.Tensor4D): tf.Tensor4D => tf.transpose(x, [0, 3, 1, 2]);
