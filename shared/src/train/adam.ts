// Adam with PyTorch semantics (torch.optim.Adam): bias-corrected moments, eps added to √v̂ (not folded into the
// step size), L2 weight decay added to the gradient. tf.train.adam differs (eps 1e-7, eps placement), so we
// keep our own, as a pure function over named tensors: state in, state out.
import * as tf from '@tensorflow/tfjs';
import { hasJsKernels, registerJsKernel } from '../model/kernels.ts';
import { SAM_FINETUNE_LR } from './lr.ts';

// Fused Adam update as one JS kernel per parameter tensor on wasm and cpu (tfjs ops would take ~12 elementwise
// passes and kernel launches per tensor). Float64 arithmetic per element, results rounded to float32.
const ADAM_KERNEL = 'FedsamAdamUpdate';
interface AdamAttrs { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; bc1: number; bc2: number; first: boolean }
function adamLoop(pv: Float32Array, gv: Float32Array, mv: Float32Array | undefined, vv: Float32Array | undefined,
  po: Float32Array, mo: Float32Array, vo: Float32Array, a: AdamAttrs): void {
  const { beta1: b1, beta2: b2, eps, weightDecay: wd } = a;
  const c1 = 1 - b1, c2 = 1 - b2;
  const stepSize = a.lr / a.bc1;
  const inv = 1 / Math.sqrt(a.bc2);
  const n = pv.length;
  let g = gv;
  if (wd) {
    g = new Float32Array(n);
    for (let i = 0; i < n; i++) g[i] = gv[i] + wd * pv[i];
  }
  if (mv && vv) {
    for (let i = 0; i < n; i++) {
      const gi = g[i];
      const m0 = mv[i];
      mo[i] = m0 + c1 * (gi - m0);
      vo[i] = b2 * vv[i] + c2 * gi * gi;
    }
  } else {
    for (let i = 0; i < n; i++) {
      const gi = g[i];
      mo[i] = c1 * gi;
      vo[i] = c2 * gi * gi;
    }
  }
  // torch: p -= (lr / bc1) · m / (√v / √bc2 + eps), on the stored (float32) moments
  for (let i = 0; i < n; i++) po[i] = pv[i] - (stepSize * mo[i]) / (Math.sqrt(vo[i]) * inv + eps);
}

registerJsKernel(ADAM_KERNEL, (raw, { p, g, m, v }, attrs) => {
  const a = attrs as AdamAttrs;
  const outs = [raw.alloc([...p!.shape]), raw.alloc([...p!.shape]), raw.alloc([...p!.shape])]; // before the views
  const [po, mo, vo] = outs.map(raw.view);
  adamLoop(raw.view(p!), raw.view(g!), a.first ? undefined : raw.view(m!), a.first ? undefined : raw.view(v!), po!, mo!, vo!, a);
  return outs;
});

export interface AdamOptions { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number }
export const ADAM_DEFAULTS: AdamOptions = { lr: SAM_FINETUNE_LR, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };

export interface AdamState {
  /** Steps taken per parameter (PyTorch keeps one per parameter; parameters without a gradient are not stepped). */
  step: Map<string, number>;
  m: Map<string, tf.Tensor>;
  v: Map<string, tf.Tensor>;
}

export function adamInit(): AdamState {
  return { step: new Map(), m: new Map(), v: new Map() };
}

/**
 * One Adam step. `params` are replaced in place (old tensors disposed) for every name in `grads`;
 * parameters without a gradient stay as they are, like torch's `.grad is None`.
 */
export function adamStep(params: Map<string, tf.Tensor>, grads: Map<string, tf.Tensor>, state: AdamState, opts: AdamOptions): void {
  for (const [name, g0] of grads) {
    const p = params.get(name);
    if (!p) throw new Error(`Adam: gradient for unknown parameter ${name}`);
    const t = (state.step.get(name) ?? 0) + 1;
    const bc1 = 1 - Math.pow(opts.beta1, t);
    const bc2 = 1 - Math.pow(opts.beta2, t);
    const mPrev = state.m.get(name);
    const vPrev = state.v.get(name);
    const fused = hasJsKernels() && p.dtype === 'float32' && g0.dtype === 'float32';
    const [pNew, mNew, vNew] = fused
      ? tf.engine().runKernel(ADAM_KERNEL, { p, g: g0, m: mPrev ?? p, v: vPrev ?? p },
        { ...opts, bc1, bc2, first: !mPrev } as unknown as tf.NamedAttrMap) as tf.Tensor[]
      : tf.tidy(() => {
        const g = opts.weightDecay ? tf.add(g0, tf.mul(p, opts.weightDecay)) : g0;
        const m = mPrev ? tf.add(tf.mul(mPrev, opts.beta1), tf.mul(g, 1 - opts.beta1)) : tf.mul(g, 1 - opts.beta1);
        const v = vPrev ? tf.add(tf.mul(vPrev, opts.beta2), tf.mul(tf.square(g), 1 - opts.beta2)) : tf.mul(tf.square(g), 1 - opts.beta2);
        const denom = tf.add(tf.div(tf.sqrt(v), Math.sqrt(bc2)), opts.eps);
        const upd = tf.mul(tf.div(m, denom), opts.lr / bc1);
        return [tf.sub(p, upd), m, v];
      });
    p.dispose();
    mPrev?.dispose();
    vPrev?.dispose();
    params.set(name, pNew);
    state.m.set(name, mNew);
    state.v.set(name, vNew);
    state.step.set(name, t);
  }
}

/** Steps taken so far (the most any parameter has taken; 0 for a fresh state). */
export function adamStepCount(state: AdamState): number {
  let t = 0;
  for (const s of state.step.values()) if (s > t) t = s;
  return t;
}

export function adamDispose(state: AdamState): void {
  for (const t of state.m.values()) t.dispose();
  for (const t of state.v.values()) t.dispose();
  state.m.clear();
  state.v.clear();
}
