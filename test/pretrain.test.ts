// Pretraining the whole model: encoder gradients against finite differences, the loop (loss goes down, resume is
// bit-identical, memory is stable), and the saved folder working with the other commands.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@fedsam/shared/backend';
import { visionEncoderNHWC } from '@fedsam/shared/model/visionEncoder';
import { initSamWeights, NormalRng } from '@fedsam/shared/model/init';
import { architectureConfig } from '@fedsam/shared/pretrain/architecture';
import type { Weights } from '@fedsam/shared/model/ops';

/** A model small enough for finite differences: 32 px, 4x4 patches grid, 2x2 windows, one windowed + one global block. */
const FD_ARCH = { layers: 2, width: 16, heads: 2, imageSize: 32, patchSize: 8, windowSize: 2, decoderWidth: 16, decoderLayers: 1, decoderHeads: 2 };

function randomWeights(seed: number): Weights {
  const config = architectureConfig(FD_ARCH);
  const w: Weights = new Map();
  for (const [name, t] of initSamWeights(config, seed)) {
    const data = Float32Array.from(t.data as Float32Array);
    // zero-initialised tables (pos_embed, rel_pos) and unit LayerNorm gains would hide wrong gradients: perturb all
    const noise = new NormalRng(seed + 1, name).fillNormal(new Float32Array(data.length), 0.1);
    for (let i = 0; i < data.length; i++) data[i]! += noise[i]!;
    w.set(name, tf.tensor(data, t.shape));
  }
  return w;
}

test('vision encoder gradients match central finite differences (every parameter tensor, tiny config)', async () => {
  await initBackend();
  const config = architectureConfig(FD_ARCH);
  const before = tf.memory().numTensors;
  const weights = randomWeights(7);
  const names = [...weights.keys()].filter((n) => n.startsWith('vision_encoder.')).sort();
  const S = config.vision.image_size;
  const px = tf.tensor4d(new NormalRng(3, 'px').fillNormal(new Float32Array(3 * S * S)), [1, 3, S, S]);
  const out = visionEncoderNHWC(weights, config, px);
  const R = tf.tensor(new NormalRng(4, 'R').fillNormal(new Float32Array(out.size)), out.shape);
  out.dispose();
  // L(w) = Σ encoder(px)·R, in float64 on the host so the differences are not float32 sums
  const L = (w: Weights, trainable: boolean): tf.Scalar => tf.tidy(() => tf.sum(tf.mul(visionEncoderNHWC(w, config, px, undefined, trainable), R)));
  const Lhost = (w: Weights): number => {
    const e = visionEncoderNHWC(w, config, px);
    const a = e.dataSync(), r = R.dataSync();
    e.dispose();
    let s = 0;
    for (let i = 0; i < a.length; i++) s += a[i]! * r[i]!;
    return s;
  };
  // the trainable path computes the same forward
  const f0 = L(weights, false), f1 = L(weights, true);
  assert.ok(Math.abs(f0.dataSync()[0]! - f1.dataSync()[0]!) < 1e-3 * Math.max(1, Math.abs(f0.dataSync()[0]!)), 'trainable forward equals frozen forward');
  tf.dispose([f0, f1]);
  const grads = tf.grads((...xs: tf.Tensor[]) => {
    const local: Weights = new Map(weights);
    names.forEach((n, i) => local.set(n, xs[i]!));
    return L(local, true);
  })(names.map((n) => weights.get(n)!));
  const bad: string[] = [];
  names.forEach((name, i) => {
    // directional derivative along a random unit direction d: ⟨∇L, d⟩ vs (L(w+εd) − L(w−εd)) / 2ε
    const p = weights.get(name)!;
    const d = new NormalRng(11, name).fillNormal(new Float32Array(p.size));
    const norm = Math.hypot(...d);
    for (let k = 0; k < d.length; k++) d[k]! /= norm;
    const g = grads[i]!.dataSync();
    let analytic = 0;
    for (let k = 0; k < d.length; k++) analytic += g[k]! * d[k]!;
    const eps = 1e-2;
    const shifted = (sign: number): number => {
      const base = p.dataSync();
      const q = tf.tensor(base.map((v, k) => v + sign * eps * d[k]!), p.shape);
      const local: Weights = new Map(weights);
      local.set(name, q);
      const v = Lhost(local);
      q.dispose();
      return v;
    };
    const numeric = (shifted(1) - shifted(-1)) / (2 * eps);
    // float32 forward: |L| ~ 10, so the difference quotient carries ~1e-6·|L|/ε ≈ 1e-3 of rounding noise
    const tol = 2e-3 + 2e-2 * Math.abs(numeric);
    if (process.env.FEDSAM_FD_DEBUG) console.log(name, analytic, numeric);
    if (!(Math.abs(analytic - numeric) <= tol)) bad.push(`${name}: analytic ${analytic.toExponential(4)} vs numeric ${numeric.toExponential(4)}`);
  });
  tf.dispose(grads);
  tf.dispose([px, R, ...weights.values()]);
  assert.deepEqual(bad, []);
  assert.equal(tf.memory().numTensors, before, 'no tensors leaked');
});
