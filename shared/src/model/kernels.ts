// Process-wide tfjs kernel work, shaped by what tfjs-wasm does slowly or wrongly (see docs/CONTRIBUTING.md and
// ../shared/notes/tfjs-wasm-performance.md):
//   - JS kernels over the backend's own memory (wasm heap, cpu arrays) for what tfjs runs as scalar libm loops or
//     transposes first: GELU and its gradient (table based), column sums (bias and LayerNorm-gain gradients);
//   - on wasm, copy-free replacements of Identity, same-dtype Cast and Slice (tfjs-wasm copies whole tensors), and a
//     guard for BatchMatMul: tfjs-wasm's XNNPACK operator cache is keyed by the right-hand tensor's buffer only, so a
//     reshaped view used as b with another shape would get wrong results.
// The layers in ops.ts call ensureFastKernels(); code calling tf.matMul directly should too.
import * as tf from '@tensorflow/tfjs';

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

export const GELU = 'FedsamGelu';
const GELU_GRAD = 'FedsamGeluGrad';
export const COL_SUM = 'FedsamColSum';
export const COL_SUM2 = 'FedsamColSum2';

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
