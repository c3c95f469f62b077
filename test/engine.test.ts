// Local engine: embedding cache behaviour (reuse, changed image, half-written file, float16), low-res targets,
// steady memory across training steps, and training that beats the untrained model on synthetic data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, writeFile, truncate, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { initBackend } from '@fedsam/shared/backend';
import { loadModel } from '@fedsam/shared/model/presets';
import { initSamWeights } from '@fedsam/shared/model/init';
import { architectureConfig } from '@fedsam/shared/pretrain/architecture';
import { saveSamCheckpoint } from '@fedsam/shared/checkpoint/save';
import { trainStep, trainableDecoderNames } from '@fedsam/shared/train/step';
import { adamInit, adamDispose, ADAM_DEFAULTS } from '@fedsam/shared/train/adam';
import { synthesize } from '@fedsam/client/data/synth';
import { loadDataset } from '@fedsam/client/data/datasets';
import { EmbeddingCache } from '@fedsam/client/engine/cache';
import { embedImages, lowResTarget, prepareItems, trainDecoder, evaluateItems, samplePointsLowRes, startDataParallel } from '@fedsam/client/engine/trainer';
import { Rng } from '@fedsam/client/data/rng';
import { splitByGroup } from '@fedsam/client/data/split';

async function allFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(join(e.parentPath ?? (e as any).path, e.name));
  return out;
}

test('lowResTarget maps the mask into the padded low-res frame', () => {
  // 100 wide x 50 high image, left half foreground; model frame 64 px (resized 64x32), low-res 16.
  const W = 100, H = 50;
  const mask = new Uint8Array(W * H);
  for (let y = 0; y < H; y++) for (let x = 0; x < 50; x++) mask[y * W + x] = 1;
  const t = lowResTarget(mask, [H, W], [32, 64], 64, 16);
  // rows 0..7 cover the image (32/4), columns 0..7 are the left half; everything else is padding or background
  for (let u = 0; u < 16; u++) for (let v = 0; v < 16; v++) assert.equal(t[u * 16 + v], u < 8 && v < 8 ? 1 : 0, `(${u},${v})`);
});

test('embedding cache: computed once, changed image re-embedded, half-written file recomputed', async () => {
  await initBackend();
  const root = await mkdtemp(join(tmpdir(), 'fedsam-cache-'));
  await synthesize({ out: join(root, 'data'), sites: 1, imagesPerSite: 4, seed: 3, size: 128 });
  const loaded = await loadModel(undefined);
  const cacheDir = join(root, 'cache');
  const mk = () => new EmbeddingCache({ dir: cacheDir, visionHash: loaded.visionHash, processor: loaded.processor.config });
  let ds = await loadDataset(join(root, 'data', 'site-1'));
  const first = await embedImages(loaded, mk(), ds.samples, { quiet: true });
  assert.equal(first.computed, 4);
  const again = await embedImages(loaded, mk(), ds.samples, { quiet: true });
  assert.equal(again.computed, 0, 'a second run embeds nothing');

  // Change one image: only it is re-embedded.
  const imgDir = join(root, 'data', 'site-1', 'images');
  const name = (await readdir(imgDir)).sort()[0];
  const { data, info } = await sharp(join(imgDir, name)).raw().toBuffer({ resolveWithObject: true });
  data[0] = data[0] ^ 0xff;
  await sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } }).png().toFile(join(imgDir, name));
  ds = await loadDataset(join(root, 'data', 'site-1'));
  const changed = await embedImages(loaded, mk(), ds.samples, { quiet: true });
  assert.equal(changed.computed, 1);

  // A truncated file (process killed mid-write by something else) is detected and recomputed.
  const files = await allFiles(cacheDir);
  assert.equal(files.filter((f) => f.endsWith('.safetensors')).length, 5);
  const victim = files.find((f) => f.endsWith('.safetensors'))!;
  await truncate(victim, (await stat(victim)).size - 100);
  const c = mk();
  const repaired = await embedImages(loaded, c, ds.samples, { quiet: true });
  assert.ok(repaired.computed <= 1 && c.stats.corrupt <= 1);
  // garbage under a real name is never read as data (every file: one of them is the changed image's stale entry)
  for (const f of (await allFiles(cacheDir)).filter((f) => f.endsWith('.safetensors'))) await writeFile(f, 'not a safetensors file');
  const c2 = mk();
  const redone = await embedImages(loaded, c2, ds.samples, { quiet: true });
  assert.equal(c2.stats.corrupt, 4);
  assert.equal(redone.computed, 4);
  loaded.model.dispose();
});

test('float16 cache stays close to float32', async () => {
  await initBackend();
  const root = await mkdtemp(join(tmpdir(), 'fedsam-f16-'));
  await synthesize({ out: join(root, 'data'), sites: 1, imagesPerSite: 2, seed: 4, size: 128 });
  const loaded = await loadModel(undefined);
  const ds = await loadDataset(join(root, 'data', 'site-1'));
  const c32 = new EmbeddingCache({ dir: join(root, 'c32'), visionHash: loaded.visionHash, processor: loaded.processor.config });
  const c16 = new EmbeddingCache({ dir: join(root, 'c16'), visionHash: loaded.visionHash, processor: loaded.processor.config, float16: true });
  await embedImages(loaded, c32, ds.samples, { quiet: true });
  await embedImages(loaded, c16, ds.samples, { quiet: true });
  const key = ds.samples[0].imageKey;
  const a = (await c32.get(c32.keyFor(key)))!.data;
  const b = (await new EmbeddingCache({ dir: join(root, 'c16'), visionHash: loaded.visionHash, processor: loaded.processor.config, float16: true }).get(c16.keyFor(key)))!.data;
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(a[i])));
  assert.ok(worst > 0 && worst < 1e-3, `float16 relative error ${worst}`);
  loaded.model.dispose();
});

test('training steps keep tf memory steady', async () => {
  await initBackend();
  const loaded = await loadModel(undefined);
  const model = loaded.model;
  const names = trainableDecoderNames(model.decoderParameterNames(), loaded.config.decoder.num_multimask_outputs);
  const adam = adamInit();
  const B = 2, s = loaded.config.prompt.imageEmbeddingSize, C = loaded.config.prompt.hidden_size, L = 4 * s;
  const batch = { embeddingsNHWC: tf.randomNormal([B, s, s, C]) as tf.Tensor4D, boxes: tf.tensor3d([[[10, 20, 120, 140]], [[30, 30, 200, 90]]]), target: tf.ones([B, 1, L, L]) as tf.Tensor4D };
  trainStep(model, batch, names, adam, { ...ADAM_DEFAULTS, lr: 1e-3 });
  const counts: number[] = [];
  for (let i = 0; i < 4; i++) {
    trainStep(model, batch, names, adam, { ...ADAM_DEFAULTS, lr: 1e-3 });
    counts.push(tf.memory().numTensors);
  }
  assert.deepEqual(counts, [counts[0], counts[0], counts[0], counts[0]], `numTensors per step: ${counts}`);
  adamDispose(adam);
  tf.dispose([batch.embeddingsNHWC, batch.boxes, batch.target]);
  model.dispose();
});

test('a few epochs on synthetic data beat the untrained model (the built-in shape with random weights)', async () => {
  await initBackend();
  const root = await mkdtemp(join(tmpdir(), 'fedsam-train-'));
  await synthesize({ out: join(root, 'data'), sites: 1, imagesPerSite: 12, seed: 5, size: 128 });
  // The trainer's machinery, not the shipped weights: from random weights the gain is large and clear.
  const config = architectureConfig({});
  await saveSamCheckpoint(join(root, 'random-model'), config, initSamWeights(config, 5));
  const loaded = await loadModel(join(root, 'random-model'));
  const cache = new EmbeddingCache({ dir: join(root, 'cache'), visionHash: loaded.visionHash, processor: loaded.processor.config });
  const { samples } = await loadDataset(join(root, 'data', 'site-1'));
  const split = splitByGroup(samples, { valFraction: 0.25, seed: 1 });
  const train = await prepareItems(loaded, cache, split.train, { quiet: true });
  const val = await prepareItems(loaded, cache, split.val, { quiet: true });
  const before = await evaluateItems(loaded, cache, val);
  const history = await trainDecoder(loaded, cache, train, val, { epochs: 4, lr: 3e-3, batchSize: 4, seed: 1, quiet: true });
  const after = history[history.length - 1].val!;
  assert.ok(history[history.length - 1].trainLoss < history[0].trainLoss, 'training loss falls');
  assert.ok(after.dice > before.dice + 0.1, `val Dice ${before.dice.toFixed(3)} -> ${after.dice.toFixed(3)}`);
  loaded.model.dispose();
});

test('point prompts: positives on the object, negatives off it inside the box, padding when absent', () => {
  const L = 16, pad = 64, f = pad / L;
  const target = new Uint8Array(L * L);
  for (let u = 4; u < 8; u++) for (let v = 4; v < 8; v++) target[u * L + v] = 1;
  const it = { target, reshapedSize: [64, 64], originalSize: [64, 64] } as any;
  const rng = new Rng(3);
  for (let rep = 0; rep < 20; rep++) {
    const { points, labels } = samplePointsLowRes(it, [8, 8, 40, 40], L, pad, { positive: 2, negative: 1 }, rng);
    assert.deepEqual(labels, [1, 1, 0]);
    points.forEach(([x, y], i) => {
      const u = Math.floor((y + 0.5) / f), v = Math.floor((x + 0.5) / f);
      assert.equal(target[u * L + v], labels[i] === 1 ? 1 : 0);
      if (labels[i] === 0) assert.ok(x >= 8 && x <= 40 && y >= 8 && y <= 40);
    });
  }
  const empty = { target: new Uint8Array(L * L), reshapedSize: [64, 64], originalSize: [64, 64] } as any;
  assert.deepEqual(samplePointsLowRes(empty, [0, 0, 64, 64], L, pad, { positive: 1, negative: 0 }, rng), { points: [[-10, -10]], labels: [-10] });
});

test('data-parallel steps (this thread + a worker) follow the single-thread trajectory', async () => {
  await initBackend();
  const root = await mkdtemp(join(tmpdir(), 'fedsam-dp-'));
  await synthesize({ out: join(root, 'data'), sites: 1, imagesPerSite: 4, seed: 8, size: 128 });
  const { samples } = await loadDataset(join(root, 'data', 'site-1'));
  const runs = [];
  for (const dataParallel of [false, true]) {
    const loaded = await loadModel(undefined);
    const cache = new EmbeddingCache({ dir: join(root, 'cache'), visionHash: loaded.visionHash, processor: loaded.processor.config });
    const items = await prepareItems(loaded, cache, samples, { quiet: true });
    const h = await trainDecoder(loaded, cache, items, [], { epochs: 2, lr: 1e-3, batchSize: 4, seed: 2, quiet: true, dataParallel });
    const w = loaded.model.weights.get('mask_decoder.mask_tokens.weight')!.dataSync().slice();
    runs.push({ losses: h.map((e) => e.trainLoss), w });
    loaded.model.dispose();
  }
  for (let i = 0; i < runs[0].losses.length; i++) assert.ok(Math.abs(runs[0].losses[i] - runs[1].losses[i]) < 1e-4, `epoch ${i + 1}: ${runs[0].losses[i]} vs ${runs[1].losses[i]}`);
  let worst = 0;
  for (let i = 0; i < runs[0].w.length; i++) worst = Math.max(worst, Math.abs(runs[0].w[i] - runs[1].w[i]));
  assert.ok(worst < 1e-4, `mask tokens differ by ${worst}`);
});

test('a data-parallel worker reused for many steps adds no listeners (no MaxListenersExceededWarning)', async () => {
  await initBackend();
  const root = await mkdtemp(join(tmpdir(), 'fedsam-dp-'));
  await synthesize({ out: join(root, 'data'), sites: 1, imagesPerSite: 4, seed: 8, size: 128 });
  const { samples } = await loadDataset(join(root, 'data', 'site-1'));
  const loaded = await loadModel(undefined);
  const cache = new EmbeddingCache({ dir: join(root, 'cache'), visionHash: loaded.visionHash, processor: loaded.processor.config });
  const items = await prepareItems(loaded, cache, samples, { quiet: true });
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on('warning', onWarning);
  const dp = await startDataParallel(loaded);
  try {
    const steps = Math.ceil(items.length / 2) * 6;
    assert.ok(steps > 11, `${steps} steps: more than the default limit of 10 listeners`);
    await trainDecoder(loaded, cache, items, [], { epochs: 6, lr: 1e-3, batchSize: 2, seed: 2, quiet: true, dataParallel: dp });
    await new Promise((r) => setImmediate(r));
  } finally {
    await dp.close();
    process.off('warning', onWarning);
    loaded.model.dispose();
  }
  assert.deepEqual(warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message), []);
});
