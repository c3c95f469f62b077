// Adam with PyTorch semantics (torch.optim.Adam): bias-corrected moments, eps added to √v̂ (not folded into the
// step size), L2 weight decay added to the gradient. tf.train.adam differs (eps 1e-7, eps placement), so we
// keep our own, as a pure function over named tensors: state in, state out.
import * as tf from '@tensorflow/tfjs';

export interface AdamOptions { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number }
export const ADAM_DEFAULTS: AdamOptions = { lr: 1e-5, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };

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
    const [pNew, mNew, vNew] = tf.tidy(() => {
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

export function adamDispose(state: AdamState): void {
  for (const t of state.m.values()) t.dispose();
  for (const t of state.v.values()) t.dispose();
  state.m.clear();
  state.v.clear();
}
