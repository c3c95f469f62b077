// Pretraining the whole model: encoder gradients against finite differences, the loop (loss goes down, resume is
// bit-identical, memory is stable), and the saved folder working with the other commands.
import { test } from 'node:test';
import { BOX_CROP_CONTEXT } from '@fedsam/shared/boxCrop';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@fedsam/shared/backend';
import { visionEncoderNHWC } from '@fedsam/shared/model/visionEncoder';
import { initSamWeights, NormalRng } from '@fedsam/shared/model/init';
import { architectureConfig } from '@fedsam/shared/pretrain/architecture';
import { growVisionEncoder } from '@fedsam/shared/pretrain/grow';
import { halvePatches } from '@fedsam/shared/pretrain/refine';
import type { Weights } from '@fedsam/shared/model/ops';
import { mkdtemp, readFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeItem, runPretrain, type PretrainOptions } from '@fedsam/shared/pretrain/loop';
import { pretrainableNames, pretrainLossAndGrads } from '@fedsam/shared/pretrain/step';
import { PretrainParallel } from '@fedsam/shared/pretrain/parallel';
import { processorFor } from '@fedsam/shared/model/presets';
import { loadSamCheckpoint } from '@fedsam/shared/checkpoint/load';
import { SamModel } from '@fedsam/shared/model/sam';
import type { SampleSource } from '@fedsam/shared/pretrain/sample';
import { Rng } from '@fedsam/shared/rng';
import { synthSampleSource } from '@fedsam/client/data/synthSource';
import type { CheckpointEval } from '@fedsam/client/local/checkpointEval';
import { runFedsam as fedsam } from './helpers/fed-harness.ts';

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

/** A 64-px model and corpus: a step takes a fraction of a second. */
const SMALL_ARCH = { layers: 2, width: 32, heads: 2, imageSize: 64, patchSize: 8, windowSize: 4, decoderWidth: 32, decoderLayers: 2, decoderHeads: 4 };
const SMALL: Partial<PretrainOptions> = { batchSize: 2, promptsPerImage: 1, lr: 3e-3, warmupSteps: 5, minLrFraction: 1 };

/** `n` fixed images, repeated (an overfitting corpus). */
function fixedImages(n: number, seed: number): SampleSource {
  const base = synthSampleSource(64);
  return (i) => base(i % n, new Rng(`fixed/${seed}/${i % n}`));
}

for (const seed of [1, 2]) {
  test(`a short pretraining run lowers the loss on its images, with a stable tensor count (seed ${seed})`, async () => {
    await initBackend();
    const config = architectureConfig(SMALL_ARCH);
    const out = await mkdtemp(join(tmpdir(), 'fedsam-pretrain-'));
    const source = fixedImages(2, seed);
    const counts: number[] = [];
    await runPretrain({ out, config, source, sourceName: 'fixed', options: { ...SMALL, steps: 40, seed, checkpointEvery: 40 }, onStep: () => counts.push(tf.memory().numTensors) });
    assert.equal(counts.length, 40);
    assert.equal(counts[counts.length - 1], counts[1], 'no tensors pile up over steps');
    // the same prompts on the same two images, before (initial weights) and after training
    const processor = await processorFor(config);
    const items = [0, 1, 2, 3].map((i) => makeItem(source, i, seed, config, processor, 1));
    const lossOf = (model: SamModel): number => {
      const { stats, grads } = pretrainLossAndGrads(model, items, pretrainableNames(model.weights.keys()), { iouWeight: 1, bceWeight: 0.1 });
      tf.dispose([...grads.values()]);
      return stats.maskLoss;
    };
    const before = SamModel.fromHost(config, initSamWeights(config, seed));
    const after = SamModel.fromHost(config, (await loadSamCheckpoint(out)).weights);
    const [l0, l1] = [lossOf(before), lossOf(after)];
    before.dispose();
    after.dispose();
    assert.ok(l1 < 0.92 * l0, `mask loss ${l0.toFixed(4)} -> ${l1.toFixed(4)}`);
  });
}

test('a run stopped and resumed from its checkpoint ends with the same weights and log as an uninterrupted run', async () => {
  await initBackend();
  const config = architectureConfig(SMALL_ARCH);
  const source = synthSampleSource(64);
  const options = { ...SMALL, steps: 6, checkpointEvery: 2, seed: 5 };
  const a = await mkdtemp(join(tmpdir(), 'fedsam-pretrain-a-'));
  const b = await mkdtemp(join(tmpdir(), 'fedsam-pretrain-b-'));
  await runPretrain({ out: a, config, source, sourceName: 'synth', options });
  await runPretrain({ out: b, config, source, sourceName: 'synth', options, stopAfter: 3 }); // checkpoint at 2, state at 3 lost
  await assert.rejects(runPretrain({ out: b, config, source, sourceName: 'synth', options }), /--resume/);
  await assert.rejects(runPretrain({ out: b, config, source, sourceName: 'synth', options: { ...options, lr: 1e-3 }, resume: true }), /other settings/);
  const r = await runPretrain({ out: b, config, source, sourceName: 'synth', options, resume: true });
  assert.equal(r.log[0]!.step, 4, 'resumed after the last checkpoint (step 3 ran past it, so it is redone)');
  const wa = (await loadSamCheckpoint(a)).weights, wb = (await loadSamCheckpoint(b)).weights;
  assert.deepEqual([...wa.keys()], [...wb.keys()]);
  for (const [n, t] of wa) assert.deepEqual(Buffer.from((wb.get(n)!.data as Float32Array).buffer), Buffer.from((t.data as Float32Array).buffer), n);
  const strip = (text: string) => text.trim().split('\n').map((l) => { const { seconds: _s, ...rest } = JSON.parse(l); return rest; });
  const [la, lb] = [strip(await readFile(join(a, 'pretrain-log.jsonl'), 'utf8')), strip(await readFile(join(b, 'pretrain-log.jsonl'), 'utf8'))];
  assert.equal(la.length, 6);
  assert.deepEqual(lb, la);
});

test('two threads give the gradients and stats of the sequential step', async () => {
  await initBackend();
  const config = architectureConfig(SMALL_ARCH);
  const model = SamModel.fromHost(config, initSamWeights(config, 3));
  const processor = await processorFor(config);
  const items = [0, 1, 2].map((i) => makeItem(synthSampleSource(64), i, 3, config, processor, 2));
  items.push({ ...items[0]!, prompts: [] }); // an image without objects counts for neither half
  const names = pretrainableNames(model.weights.keys());
  const opts = { iouWeight: 1, bceWeight: 0.1 };
  const seq = pretrainLossAndGrads(model, items, names, opts);
  const parallel = await PretrainParallel.start(config, model);
  try {
    const par = await parallel.lossAndGrads(model, items, names, opts);
    assert.deepEqual([...par.grads.keys()].sort(), [...seq.grads.keys()].sort());
    for (const [n, g] of seq.grads) {
      const d = tf.tidy(() => tf.max(tf.abs(tf.sub(g, par.grads.get(n)!))).dataSync()[0]!);
      const m = tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0]!);
      assert.ok(d <= 1e-5 * Math.max(1, m), `${n}: differs by ${d} (max ${m})`);
    }
    assert.equal(par.stats.prompts, seq.stats.prompts);
    assert.ok(Math.abs(par.stats.loss - seq.stats.loss) < 1e-6 && Math.abs(par.stats.dice - seq.stats.dice) < 1e-6);
    tf.dispose([...par.grads.values()]);
  } finally {
    await parallel.close();
    tf.dispose([...seq.grads.values()]);
    model.dispose();
  }
});

test('a grown model (--grow-layers) computes what the model it grew from did, and its new blocks get gradients', async () => {
  await initBackend();
  const config = architectureConfig(FD_ARCH);
  const host = new Map([...randomWeights(5)].map(([n, t]) => { const h = { dtype: 'float32' as const, shape: t.shape, data: t.dataSync() as Float32Array }; t.dispose(); return [n, h]; }));
  const grown = growVisionEncoder(config, host, 4, 9);
  assert.deepEqual(config.vision.global_attn_indexes, [1]);
  assert.deepEqual(grown.config.vision.global_attn_indexes, [1, 3]);
  assert.equal(grown.config.vision.num_hidden_layers, 4);
  assert.throws(() => growVisionEncoder(config, host, 2, 9), /more than the model's 2 vision blocks/);
  const before = tf.memory().numTensors;
  const toTf = (m: Map<string, { shape: number[]; data: Float32Array | Int32Array | Uint8Array }>): Weights => new Map([...m].map(([n, t]) => [n, tf.tensor(t.data as Float32Array, t.shape)]));
  const [w0, w1] = [toTf(host), toTf(grown.weights)];
  const S = config.vision.image_size;
  const px = tf.tensor4d(new NormalRng(3, 'px').fillNormal(new Float32Array(3 * S * S)), [1, 3, S, S]);
  const [e0, e1] = [visionEncoderNHWC(w0, config, px), visionEncoderNHWC(w1, grown.config, px)];
  const [a, b] = [e0.dataSync(), e1.dataSync()];
  let maxDiff = 0;
  for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
  assert.ok(maxDiff < 1e-6, `grown encoder differs by ${maxDiff}`);
  // the zeroed output projections of a new block learn: their gradient is not zero
  const zeroed = ['vision_encoder.layers.2.attn.proj.weight', 'vision_encoder.layers.3.mlp.lin2.weight'];
  assert.ok(zeroed.every((n) => grown.weights.get(n)!.data.every((x) => x === 0)));
  const grads = tf.grads((...xs: tf.Tensor[]) => {
    const local: Weights = new Map(w1);
    zeroed.forEach((n, i) => local.set(n, xs[i]!));
    return tf.sum(tf.square(visionEncoderNHWC(local, grown.config, px, undefined, true))) as tf.Scalar;
  })(zeroed.map((n) => w1.get(n)!));
  for (const [i, g] of grads.entries()) assert.ok(tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0]!) > 1e-6, `${zeroed[i]} gets no gradient`);
  tf.dispose([...w0.values(), ...w1.values(), px, e0, e1, ...grads]);
  assert.equal(tf.memory().numTensors, before, 'tensors leaked');
});

test('a refined model (--halve-patches) embeds a half-size patch as the trained model embeds it upsampled 2x, keeps its position tables at even distances, and runs on the finer grid', async () => {
  await initBackend();
  const config = architectureConfig(FD_ARCH);
  const host = new Map([...randomWeights(6)].map(([n, t]) => { const h = { dtype: 'float32' as const, shape: t.shape, data: t.dataSync() as Float32Array }; t.dispose(); return [n, h]; }));
  const fine = halvePatches(config, host);
  const v = config.vision, f = fine.config.vision;
  assert.deepEqual([f.patch_size, f.gridSize, f.window_size, fine.config.prompt.imageEmbeddingSize], [v.patch_size / 2, 2 * v.gridSize, 2 * v.window_size, 2 * v.gridSize]);
  // one patch of q = p/2 pixels through the fine embedding = the same patch upsampled 2x (nearest) through the trained one
  const p = v.patch_size, q = p / 2, C = v.hidden_size;
  const W = host.get('vision_encoder.patch_embed.projection.weight')!.data as Float32Array;
  const Wf = fine.weights.get('vision_encoder.patch_embed.projection.weight')!.data as Float32Array;
  const patch = new NormalRng(2, 'patch').fillNormal(new Float32Array(3 * q * q));
  for (let c = 0; c < C; c++) {
    let coarse = 0, fineSum = 0;
    for (let ch = 0; ch < 3; ch++) for (let y = 0; y < p; y++) for (let x = 0; x < p; x++) coarse += W[((c * 3 + ch) * p + y) * p + x]! * patch[(ch * q + (y >> 1)) * q + (x >> 1)]!;
    for (let ch = 0; ch < 3; ch++) for (let y = 0; y < q; y++) for (let x = 0; x < q; x++) fineSum += Wf[((c * 3 + ch) * q + y) * q + x]! * patch[(ch * q + y) * q + x]!;
    assert.ok(Math.abs(coarse - fineSum) < 1e-4, `channel ${c}: ${coarse} vs ${fineSum}`);
  }
  // an even distance 2d on the fine grid is the distance d on the trained one: the same table row
  for (const key of ['vision_encoder.layers.0.attn.rel_pos_h', 'vision_encoder.layers.1.attn.rel_pos_w']) {
    const a = host.get(key)!, b = fine.weights.get(key)!;
    const [rows, dim] = a.shape as [number, number], n = (rows + 1) / 2;
    assert.equal(b.shape[0], 4 * n - 1);
    for (let d = -(n - 1); d <= n - 1; d++) {
      for (let k = 0; k < dim; k++) assert.ok(Math.abs(a.data[(d + n - 1) * dim + k]! - b.data[(2 * d + 2 * n - 1) * dim + k]!) < 1e-6, `${key} distance ${d}`);
    }
  }
  assert.throws(() => halvePatches(architectureConfig({ ...FD_ARCH, patchSize: 2, imageSize: 32 }), host), /even patch side of at least 4/);
  const before = tf.memory().numTensors;
  const w = new Map([...fine.weights].map(([n, t]) => [n, tf.tensor(t.data as Float32Array, t.shape)])) as Weights;
  const S = f.image_size;
  const px = tf.tensor4d(new NormalRng(3, 'px').fillNormal(new Float32Array(3 * S * S)), [1, 3, S, S]);
  const e = visionEncoderNHWC(w, fine.config, px);
  assert.deepEqual(e.shape, [1, f.gridSize, f.gridSize, v.output_channels]);
  tf.dispose([...w.values(), px, e]);
  assert.equal(tf.memory().numTensors, before, 'tensors leaked');
});

test('fedsam pretrain writes a model folder that fedsam evaluate --model uses', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-cli-pretrain-'));
  const arch = Object.entries(SMALL_ARCH).map(([k, v]) => `${k}=${v}`).join(',');
  const p = await fedsam(['pretrain', '--out', join(dir, 'model'), '--steps', '2', '--batch-size', '1', '--config', arch, '--checkpoint-every', '1']);
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stdout, /step 2\/2/);
  const files = await readdir(join(dir, 'model'));
  for (const f of ['config.json', 'model.safetensors', 'preprocessor_config.json', 'pretrain-log.jsonl', 'checkpoint']) assert.ok(files.includes(f), f);
  const again = await fedsam(['pretrain', '--out', join(dir, 'model'), '--steps', '2', '--batch-size', '1', '--config', arch]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /pass --resume/);
  const s = await fedsam(['synth', '--out', join(dir, 'data'), '--sites', '1', '--images-per-site', '3', '--size', '64']);
  assert.equal(s.code, 0, s.stderr);
  const e = await fedsam(['evaluate', '--model', join(dir, 'model'), '--data', join(dir, 'data', 'site-1'), '--quiet'], { FEDSAM_CACHE_DIR: join(dir, 'cache') });
  assert.equal(e.code, 0, e.stderr);
  assert.match(e.stdout, /box Dice/);
  const [g, noInit, h, noInitHalve] = await Promise.all([
    fedsam(['pretrain', '--init', join(dir, 'model'), '--grow-layers', String(SMALL_ARCH.layers + 1), '--out', join(dir, 'grown'), '--steps', '1', '--batch-size', '1', '--quiet']),
    fedsam(['pretrain', '--grow-layers', '3', '--out', join(dir, 'x'), '--steps', '1']),
    fedsam(['pretrain', '--init', join(dir, 'model'), '--halve-patches', '--out', join(dir, 'fine'), '--steps', '1', '--batch-size', '1', '--quiet']),
    fedsam(['pretrain', '--halve-patches', '--out', join(dir, 'y'), '--steps', '1']),
  ]);
  assert.equal(h.code, 0, h.stderr);
  assert.match(h.stdout, new RegExp(`with ${SMALL_ARCH.patchSize / 2}-pixel patches`));
  const fineConfig = JSON.parse(await readFile(join(dir, 'fine', 'config.json'), 'utf8')) as { vision_config: { patch_size: number; window_size: number } };
  assert.deepEqual([fineConfig.vision_config.patch_size, fineConfig.vision_config.window_size], [SMALL_ARCH.patchSize / 2, 2 * SMALL_ARCH.windowSize]);
  assert.notEqual(noInitHalve.code, 0);
  assert.match(noInitHalve.stderr, /--halve-patches refines the model given with --init/);
  assert.equal(g.code, 0, g.stderr);
  assert.match(g.stdout, new RegExp(`grown to ${SMALL_ARCH.layers + 1} vision blocks`));
  const grownConfig = JSON.parse(await readFile(join(dir, 'grown', 'config.json'), 'utf8')) as { vision_config: { num_hidden_layers: number } };
  assert.equal(grownConfig.vision_config.num_hidden_layers, SMALL_ARCH.layers + 1);
  assert.notEqual(noInit.code, 0);
  assert.match(noInit.stderr, /--grow-layers deepens the model given with --init/);
});

test('fedsam pretrain --eval records held-out Dice at every checkpoint, the same as fedsam evaluate gives', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-cli-pretrain-eval-'));
  const arch = Object.entries(SMALL_ARCH).map(([k, v]) => `${k}=${v}`).join(',');
  const model = join(dir, 'model'), data = join(dir, 'data', 'site-1'), log = join(model, 'eval-log.jsonl');
  const missing = await fedsam(['pretrain', '--out', model, '--steps', '2', '--batch-size', '1', '--config', arch, '--eval', join(dir, 'nowhere')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /does not exist/);
  assert.ok(!(await readdir(dir)).includes('model'), 'nothing trained before the eval folder is checked');
  const s = await fedsam(['synth', '--out', join(dir, 'data'), '--sites', '1', '--images-per-site', '3', '--size', '64']);
  assert.equal(s.code, 0, s.stderr);
  const p = await fedsam(['pretrain', '--out', model, '--steps', '2', '--batch-size', '1', '--config', arch, '--checkpoint-every', '1', '--eval', data]);
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stdout, /held-out at step 2: box-prompt Dice [0-9.]+ on the whole image, [0-9.]+ in box crops, over \d+ objects/);
  const read = async () => (await readFile(log, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as CheckpointEval);
  const first = await read();
  assert.deepEqual(first.map((e) => e.step), [1, 2]);
  // the model folder declares box crops (as the built-in's does): evaluate uses them unless told --box-crop off
  assert.equal(JSON.parse(await readFile(join(model, 'preprocessor_config.json'), 'utf8')).fedsam_box_crop, BOX_CROP_CONTEXT);
  const evaluate = async (crop: string[]) => {
    const e = await fedsam(['evaluate', '--model', model, '--data', data, '--split', 'all', '--json', '--quiet', ...crop], { FEDSAM_CACHE_DIR: join(dir, 'cache') });
    assert.equal(e.code, 0, e.stderr);
    return (JSON.parse(e.stdout) as { mean: { n: number; dice: number; boxDice: number; otsuDice: number } }).mean;
  };
  const mean = await evaluate(['--box-crop', 'off']), cropped = await evaluate([]);
  const last = first.at(-1)!;
  assert.equal(last.n, mean.n);
  assert.ok(Math.abs(last.dice - mean.dice) < 1e-9, `${last.dice} vs ${mean.dice}`);
  assert.ok(Math.abs(last.boxCropDice - cropped.dice) < 1e-9, `${last.boxCropDice} vs ${cropped.dice}`);
  assert.equal(last.boxDice, mean.boxDice);
  assert.equal(last.otsuDice, mean.otsuDice);
});
