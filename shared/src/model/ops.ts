// Linear-algebra building blocks for the SAM graph, shaped by what is fast on tfjs-wasm (single thread, XNNPACK):
//   - A BatchMatMul runs on XNNPACK only when it is 2-D (batch 1) without transpose flags; batched or transposed
//     products fall back to a naive scalar loop (10-100x slower). Every product here is 2-D and flag-free.
//   - XNNPACK packs the right-hand operand at every call with a new tensor (~15 ns per element, 2.5x a transpose),
//     so product() picks C = A·B or C = (Bᵀ·Aᵀ)ᵀ by a small cost model (transposes vs packing).
//   - Elementwise transcendental kernels (erf, exp, tanh) are scalar libm calls (15-25 ns per element); reductions
//     over a non-innermost axis transpose first. GELU and column sums therefore have JS kernels (wasm and cpu).
//   - Kernels that tfjs-wasm implements as full copies (Identity: every tensor saved for backprop is cloned; Cast to
//     the same dtype; Slice reads its whole source out of the heap first) are replaced by copy-free versions on wasm,
//     and BatchMatMul gets a fix for tfjs-wasm's XNNPACK operator cache, which is keyed by the right-hand tensor's
//     buffer only (a reshaped view used as b with another shape gets wrong results). Installed lazily by the ops
//     below (ensureFastKernels); process-wide once installed.
// See ../shared/notes/tfjs-wasm-performance.md and bench/README.md.
import * as tf from '@tensorflow/tfjs';

export type Weights = Map<string, tf.Tensor>;

/** Look a parameter up by its HF name; a missing name is a programming/config error worth a clear message. */
export function param(weights: Weights, name: string): tf.Tensor {
  const t = weights.get(name);
  if (!t) throw new Error(`missing model parameter ${name}`);
  return t;
}

// ---------------------------------------------------------------------------------------------------------------
// Backend access for the JS kernels (wasm heap views, cpu typed arrays).

/* eslint-disable @typescript-eslint/no-explicit-any */
type Info = tf.TensorInfo;
interface RawBackend {
  /** Allocate an output; call before taking input views (a wasm allocation may move the heap). */
  alloc(shape: number[]): Info;
  view(t: Info): Float32Array;
}
function rawBackend(backend: any, name: 'wasm' | 'cpu'): RawBackend {
  if (name === 'wasm') {
    return { alloc: (shape) => backend.makeOutput(shape, 'float32'), view: (t) => backend.typedArrayFromHeap(t) as Float32Array };
  }
  return {
    alloc: (shape) => backend.makeTensorInfo(shape, 'float32', new Float32Array(tf.util.sizeFromShape(shape))),
    view: (t) => backend.data.get(t.dataId).values as Float32Array,
  };
}

const JS_KERNEL_BACKENDS = ['wasm', 'cpu'] as const;
/** The current backend runs this project's JS kernels (wasm and cpu; other backends use plain tf ops). */
export const hasJsKernels = (): boolean => (JS_KERNEL_BACKENDS as readonly string[]).includes(tf.getBackend());

/** Register a kernel written in JS over the backend's own memory, for wasm and cpu. */
export function registerJsKernel(kernelName: string, run: (raw: RawBackend, inputs: Record<string, Info>, attrs: any) => Info | Info[]): void {
  for (const backendName of JS_KERNEL_BACKENDS) {
    if (tf.getKernel(kernelName, backendName)) continue;
    tf.registerKernel({
      kernelName, backendName,
      kernelFunc: ({ inputs, backend, attrs }) => run(rawBackend(backend, backendName), inputs as Record<string, Info>, attrs),
    });
  }
}

// --- GELU: x·Φ(x), Φ by a cubic-Hermite table (|error| < 2e-9 before float32 rounding) -----------------------
const G_L = 8; // Φ(-8) ≈ 6e-16: outside [-8, 8] GELU is 0 or x to float32 precision
const G_S = 32; // table steps per unit
const G_N = 2 * G_L * G_S;

/** erf to double precision (Taylor series near 0, continued fraction for erfc in the tails): builds the tables. */
function erf64(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    let sum = x, term = x;
    const x2 = x * x;
    for (let n = 1; n < 200; n++) {
      term *= -x2 / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  let f = 0;
  for (let k = 60; k >= 1; k--) f = k / 2 / (ax + f);
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
  return Math.sign(x) * (1 - erfc);
}

/** Per cell k: cubic coefficients of f on [x_k, x_k + 1/G_S] in t ∈ [0,1], from f and f' at both ends. */
function hermiteTable(f: (x: number) => number, df: (x: number) => number): Float64Array {
  const c = new Float64Array(4 * (G_N + 1));
  const h = 1 / G_S;
  for (let k = 0; k <= G_N; k++) {
    const x0 = -G_L + k * h;
    const x1 = x0 + h;
    const p0 = f(x0), p1 = f(x1), d0 = h * df(x0), d1 = h * df(x1);
    c[4 * k] = p0;
    c[4 * k + 1] = d0;
    c[4 * k + 2] = 3 * (p1 - p0) - 2 * d0 - d1;
    c[4 * k + 3] = 2 * (p0 - p1) + d0 + d1;
  }
  return c;
}
const pdf = (x: number) => Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);
const cdf = (x: number) => 0.5 * (1 + erf64(x / Math.SQRT2));
/** Φ(x) */
const PHI_T = hermiteTable(cdf, pdf);
/** GELU'(x) = Φ(x) + x·φ(x); its derivative is φ(x)·(2 - x²). */
const DGELU_T = hermiteTable((x) => cdf(x) + x * pdf(x), (x) => pdf(x) * (2 - x * x));
const G_MAX = 2 * G_L * G_S;

function geluKernel(x: Float32Array, out: Float32Array): void {
  const n = x.length;
  const C = PHI_T;
  for (let i = 0; i < n; i++) {
    const v = x[i];
    let u = v * G_S + G_L * G_S;
    u = u < 0 ? 0 : u > G_MAX ? G_MAX : u; // clamps to Φ = 0 / Φ = 1 (the last cell is flat at 1)
    const k = Math.trunc(u);
    const t = u - k;
    const j = k << 2;
    out[i] = v * (C[j] + t * (C[j + 1] + t * (C[j + 2] + t * C[j + 3])));
  }
}

function geluGradKernel(dy: Float32Array, x: Float32Array, out: Float32Array): void {
  const n = x.length;
  const C = DGELU_T;
  for (let i = 0; i < n; i++) {
    const v = x[i];
    let u = v * G_S + G_L * G_S;
    u = u < 0 ? 0 : u > G_MAX ? G_MAX : u;
    const k = Math.trunc(u);
    const t = u - k;
    const j = k << 2;
    out[i] = dy[i] * (C[j] + t * (C[j + 1] + t * (C[j + 2] + t * C[j + 3])));
  }
}

const GELU = 'FedsamGelu';
const GELU_GRAD = 'FedsamGeluGrad';
const COL_SUM = 'FedsamColSum';
const COL_SUM2 = 'FedsamColSum2';

registerJsKernel(GELU, (raw, { x }) => {
  const out = raw.alloc(x.shape);
  geluKernel(raw.view(x), raw.view(out));
  return out;
});
registerJsKernel(GELU_GRAD, (raw, { dy, x }) => {
  const out = raw.alloc(x.shape);
  geluGradKernel(raw.view(dy), raw.view(x), raw.view(out));
  return out;
});
/** Σ over rows of a [n, c] (times b when given), four rows at a time, float64 accumulators. */
function columnSums(a: Float32Array, b: Float32Array | undefined, n: number, c: number): Float64Array {
  const acc = new Float64Array(c);
  let r = 0;
  if (!b) {
    for (; r + 4 <= n; r += 4) {
      const o = r * c;
      for (let j = 0; j < c; j++) acc[j] += (a[o + j] + a[o + c + j]) + (a[o + 2 * c + j] + a[o + 3 * c + j]);
    }
    for (; r < n; r++) for (let j = 0, o = r * c; j < c; j++) acc[j] += a[o + j];
  } else {
    for (; r + 4 <= n; r += 4) {
      const o = r * c;
      for (let j = 0; j < c; j++) {
        const o1 = o + c + j, o2 = o + 2 * c + j, o3 = o + 3 * c + j;
        acc[j] += (a[o + j] * b[o + j] + a[o1] * b[o1]) + (a[o2] * b[o2] + a[o3] * b[o3]);
      }
    }
    for (; r < n; r++) for (let j = 0, o = r * c; j < c; j++) acc[j] += a[o + j] * b[o + j];
  }
  return acc;
}
/** [N, C] -> [C]: Σ over rows (a bias gradient). */
registerJsKernel(COL_SUM, (raw, { x }) => {
  const [n, c] = x.shape;
  const out = raw.alloc([c]);
  raw.view(out).set(columnSums(raw.view(x), undefined, n, c));
  return out;
});
/** ([N, C], [N, C]) -> [C]: Σ over rows of a⊙b (a LayerNorm-gain gradient). */
registerJsKernel(COL_SUM2, (raw, { a, b }) => {
  const [n, c] = a.shape;
  const out = raw.alloc([c]);
  raw.view(out).set(columnSums(raw.view(a), raw.view(b), n, c));
  return out;
});
tf.registerGradient({
  kernelName: GELU,
  inputsToSave: ['x'],
  gradFunc: (dy, saved) => ({ x: () => tf.engine().runKernel(GELU_GRAD, { dy: dy as tf.Tensor, x: saved[0] }) as tf.Tensor }),
});

// --- copy-free Identity / same-dtype Cast / Slice on wasm ---------------------------------------------------------
let fastKernelsFor: string | undefined;

/**
 * On wasm: replace tfjs-wasm's copying Identity, same-dtype Cast and heap-copying Slice by copy-free versions (same
 * results), and make BatchMatMul safe when one buffer is used as the right-hand operand with different shapes.
 * Process-wide and idempotent; the ops in this file call it, so callers never need to.
 */
export function ensureFastKernels(): void {
  const backendName = tf.getBackend();
  if (fastKernelsFor === backendName) return;
  fastKernelsFor = backendName;
  if (backendName !== 'wasm') return;
  const orig = (name: string) => tf.getKernel(name, 'wasm');
  const replace = (name: string, make: (original: tf.KernelFunc) => tf.KernelFunc) => {
    const k = orig(name);
    if (!k || (k as any).fedsam) return;
    tf.unregisterKernel(name, 'wasm');
    const cfg = { ...k, kernelFunc: make(k.kernelFunc), fedsam: true } as tf.KernelConfig;
    tf.registerKernel(cfg);
  };
  const share = (backend: any, x: Info, dtype = x.dtype): Info => {
    backend.incRef(x.dataId);
    return { dataId: x.dataId, shape: [...x.shape], dtype };
  };
  replace(tf.Identity, (original) => (args) => {
    const x = (args.inputs as any).x as Info;
    return x.dtype === 'string' ? original(args) : share(args.backend, x);
  });
  replace(tf.Cast, (original) => (args) => {
    const x = (args.inputs as any).x as Info;
    return x.dtype === (args.attrs as any).dtype && x.dtype !== 'string' ? share(args.backend, x) : original(args);
  });
  // tfjs-wasm caches the XNNPACK operator (with the packed right-hand operand) by the operand's tensor id only.
  // Reshapes share ids, so the same buffer used as b with another shape would hit an operator built for the old
  // shape (wrong results, NaN): give such a product a private copy of b.
  const bShapes = new WeakMap<object, string>();
  replace(tf.BatchMatMul, (original) => (args) => {
    const b = (args.inputs as any).b as Info;
    const key = `${b.shape.join(',')}|${(args.attrs as any).transposeB ? 1 : 0}`;
    const prev = bShapes.get(b.dataId);
    if (prev === undefined) bShapes.set(b.dataId, key);
    if (prev === undefined || prev === key) return original(args);
    const backend = args.backend as any;
    const copy = backend.makeOutput([...b.shape], b.dtype) as Info;
    (backend.typedArrayFromHeap(copy) as Float32Array).set(backend.typedArrayFromHeap(b) as Float32Array);
    const out = original({ ...args, inputs: { ...args.inputs, b: copy } } as any);
    backend.disposeData(copy.dataId);
    return out;
  });
  replace(tf.Slice, (original) => (args) => {
    const x = (args.inputs as any).x as Info;
    const backend = args.backend as any;
    if (x.dtype === 'string' || x.shape.length === 0) return original(args);
    const [begin, size] = tf.slice_util.parseSliceParams(x as tf.Tensor, (args.attrs as any).begin, (args.attrs as any).size);
    const out = backend.makeOutput(size, x.dtype) as Info;
    if (tf.util.sizeFromShape(size) === 0) return out;
    copySlice(backend.typedArrayFromHeap(x), x.shape, begin, size, backend.typedArrayFromHeap(out));
    return out;
  });
}

/** Copy the box [begin, begin+size) of x (row-major, shape) into out, one contiguous run at a time. */
function copySlice(xv: Float32Array, shape: number[], begin: number[], size: number[], ov: Float32Array): void {
  // Axes after r are taken whole: a run is size[r] x (those axes), contiguous in x.
  let r = shape.length - 1;
  let inner = 1;
  while (r > 0 && size[r] === shape[r]) inner *= shape[r--];
  const run = size[r] * inner;
  const runStart = begin[r] * inner;
  const strides = tf.util.computeStrides(shape);
  const idx = new Array<number>(r).fill(0);
  let o = 0;
  for (;;) {
    let off = runStart;
    for (let k = 0; k < r; k++) off += (begin[k] + idx[k]) * strides[k];
    if (run >= 64) ov.set(xv.subarray(off, off + run), o);
    else for (let j = 0; j < run; j++) ov[o + j] = xv[off + j];
    o += run;
    let k = r - 1;
    while (k >= 0 && ++idx[k] === size[k]) idx[k--] = 0;
    if (k < 0) break;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Products

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
