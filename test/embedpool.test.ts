// Worker-thread embedding: bit-identical to the main thread (same backend), errors name the image, a crashed worker
// fails its job and hands the queue to the others (or fails everything when none is left) instead of hanging.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { tmpdir, availableParallelism } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@fedsam/shared/backend';
import { loadModel, processorFor, frozenHashes, type LoadedModel } from '@fedsam/shared/model/presets';
import { parseSamConfig, samVitBaseConfig } from '@fedsam/shared/config';
import { initSamWeights } from '@fedsam/shared/model/init';
import { SamModel } from '@fedsam/shared/model/sam';
import { synthesize } from '@fedsam/client/data/synth';
import { loadDataset } from '@fedsam/client/data/datasets';
import type { RGBImage, Sample } from '@fedsam/client/data/types';
import { EmbeddingCache } from '@fedsam/client/engine/cache';
import { embedImages } from '@fedsam/client/engine/trainer';
import { EmbedPool, defaultEmbedWorkers, encoderGflop, sharedVisionWeights } from '@fedsam/client/engine/embedPool';
import { setEngine } from '@fedsam/shared/inference';

// The worker pool is how the tfjs engine uses several cores (ONNX Runtime has its own threads): these tests run on tfjs.
setEngine({ name: 'tfjs', reason: 'embedding-pool tests' });

let loaded: LoadedModel; // the built-in fedsam-tiny
let micro: LoadedModel; // 64 px input: keeps the pool tests quick on the cpu backend
let samples: Sample[];
let root: string;

async function microModel(): Promise<LoadedModel> {
  const config = parseSamConfig({
    vision_config: {
      hidden_size: 32, output_channels: 32, num_hidden_layers: 2, num_attention_heads: 2, image_size: 64, patch_size: 8,
      window_size: 4, global_attn_indexes: [1], mlp_dim: 64, num_pos_feats: 16,
    },
    prompt_encoder_config: { hidden_size: 32, image_size: 64, patch_size: 8, image_embedding_size: 8, mask_input_channels: 16 },
    mask_decoder_config: { hidden_size: 32, mlp_dim: 64, num_hidden_layers: 2, num_attention_heads: 4, iou_head_hidden_dim: 32 },
  }, 'micro');
  const weights = initSamWeights(config, 7);
  return { source: 'micro', config, model: SamModel.fromHost(config, weights), processor: await processorFor(config), ...frozenHashes(weights), recommendedLr: 1e-3, recommendedBoxJitter: 'sam' };
}

test.before(async () => {
  await initBackend();
  root = await mkdtemp(join(tmpdir(), 'fedsam-pool-'));
  await synthesize({ out: join(root, 'data'), sites: 1, imagesPerSite: 4, seed: 11, size: 96 });
  loaded = await loadModel(undefined);
  micro = await microModel();
  samples = (await loadDataset(join(root, 'data', 'site-1'))).samples;
});

test.after(() => { loaded.model.dispose(); micro.model.dispose(); });

const cacheAt = (name: string) => new EmbeddingCache({ dir: join(root, name), visionHash: loaded.visionHash, processor: loaded.processor.config });

/** '' when bit-identical, else how many values differ and by how much. */
function diff(a: Float32Array, b: Float32Array): string {
  if (a.length !== b.length) return `lengths ${a.length} vs ${b.length}`;
  let n = 0, worst = 0, first = -1;
  for (let i = 0; i < a.length; i++) {
    if (Object.is(a[i], b[i])) continue;
    if (first < 0) first = i;
    n++;
    worst = Math.max(worst, Math.abs(a[i] - b[i]));
  }
  return n ? `${n}/${a.length} values differ (first at ${first}: ${a[first]} vs ${b[first]}, max |diff| ${worst})` : '';
}

function image(w: number, h: number, seed: number): RGBImage {
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + seed * 13 + ((i * i) >> 5)) & 0xff;
  return { data, width: w, height: h };
}

test('embeddings from 2 workers are bit-identical to the main thread', async () => {
  const before = tf.memory().numTensors;
  const inline = cacheAt('inline');
  const pooled = cacheAt('pooled');
  const a = await embedImages(loaded, inline, samples, { quiet: true, workers: 0 });
  const b = await embedImages(loaded, pooled, samples, { quiet: true, workers: 2 });
  assert.equal(a.workers, 0);
  assert.equal(b.workers, 2);
  assert.equal(a.computed, 4);
  assert.equal(b.computed, 4);
  assert.deepEqual([...b.items.keys()], [...a.items.keys()], 'same image order');
  for (const s of samples) {
    const ia = a.items.get(s.imageKey)!, ib = b.items.get(s.imageKey)!;
    assert.deepEqual(ib, ia);
    const ea = (await cacheAt('inline').get(ia.key))!;
    const eb = (await cacheAt('pooled').get(ib.key))!;
    assert.deepEqual(eb.shape, ea.shape);
    assert.equal(diff(ea.data, eb.data), '', `${s.id}: embeddings differ`);
  }
  assert.equal(tf.memory().numTensors, before, 'no tensors leak on the main thread');
  // everything cached now: no pool is started
  const again = await embedImages(loaded, pooled, samples, { quiet: true, workers: 2 });
  assert.equal(again.computed, 0);
  assert.equal(again.workers, 0);
});

test('pool: direct embed of odd-sized images matches the main thread exactly', async () => {
  const pool = await EmbedPool.create(micro, { workers: 2 });
  try {
    assert.equal(pool.size, 2);
    assert.equal(pool.info[0].backend, tf.getBackend());
    const imgs = [image(70, 45, 1), image(33, 90, 2), image(64, 64, 3)];
    const got = await Promise.all(imgs.map((im, i) => pool.embed({ ...im, data: im.data.slice() }, `img${i}`)));
    for (let i = 0; i < imgs.length; i++) {
      const pre = micro.processor.preprocessRGB(imgs[i]);
      const ref = tf.tidy(() => micro.model.imageEmbeddingsNHWC(tf.tensor4d(pre.pixelValues, pre.shape as [number, number, number, number])));
      const want = ref.dataSync() as Float32Array;
      assert.deepEqual(got[i].shape, ref.shape);
      ref.dispose();
      assert.deepEqual(got[i].originalSize, pre.originalSize);
      assert.deepEqual(got[i].reshapedSize, pre.reshapedInputSize);
      assert.equal(diff(want, got[i].data), '', `image ${i} differs`);
    }
  } finally {
    await pool.close();
  }
});

test('a failing image is named in the error; the pool keeps working', async () => {
  const pool = await EmbedPool.create(micro, { workers: 1 });
  try {
    const bad = { data: new Uint8Array(10), width: 8, height: 8 };
    await assert.rejects(pool.embed(bad, 'image /data/broken.png (sample broken:1)'), (e: Error) => {
      assert.match(e.message, /broken\.png.*sample broken:1/);
      assert.match(e.message, /expected 8x8x3/);
      return true;
    });
    const ok = await pool.embed(image(40, 40, 5), 'fine');
    assert.equal(ok.shape[0], 1);
  } finally {
    await pool.close();
  }
  // through embedImages: the sample's file is in the message
  const s0 = samples[0];
  const broken: Sample = { ...s0, imageKey: 'sha256:broken', loadImage: async () => ({ data: new Uint8Array(3), width: 5, height: 5 }) };
  const other = { ...samples[1], imageKey: samples[1].imageKey + ':x' };
  for (const workers of [2, 0]) {
    const cache = new EmbeddingCache({ dir: join(root, `broken${workers}`), visionHash: micro.visionHash, processor: micro.processor.config });
    await assert.rejects(embedImages(micro, cache, [broken, other], { quiet: true, workers }), (e: Error) => {
      assert.ok(e.message.includes((s0.source as { path: string }).path) && e.message.includes(s0.id), e.message);
      return true;
    });
  }
});

test('a crashed worker fails its job, the survivor takes the queue; with none left nothing hangs', async () => {
  const settle = (p: Promise<unknown>) => p.then(() => 'ok', (e: Error) => e.message);
  const two = await EmbedPool.create(micro, { workers: 2 });
  try {
    two.simulateCrash(0);
    const res = await Promise.all(Array.from({ length: 4 }, (_, i) => settle(two.embed(image(64, 48, i), `img${i}`))));
    assert.equal(res.filter((r) => r === 'ok').length, 3, JSON.stringify(res));
    assert.match(res.find((r) => r !== 'ok')!, /^embedding worker 0 died while embedding img\d: simulated worker crash$/);
    assert.equal(two.size, 1);
    assert.equal((await two.embed(image(20, 20, 9), 'after')).shape[0], 1);
  } finally {
    await two.close();
  }
  const one = await EmbedPool.create(micro, { workers: 1 });
  try {
    one.simulateCrash(0);
    const res = await Promise.all(Array.from({ length: 3 }, (_, i) => settle(one.embed(image(64, 48, i), `img${i}`)))); // must settle
    assert.match(res[0], /worker 0 died while embedding img0: simulated worker crash/);
    assert.match(res[1], /no embedding worker left \(last one died: simulated worker crash\); img1 was not embedded/);
    assert.match(res[2], /img2 was not embedded/);
    assert.equal(one.size, 0);
    await assert.rejects(one.embed(image(8, 8, 0), 'late'), /no embedding worker left; late/);
  } finally {
    await one.close();
  }
});

test('fedsam train (bin/fedsam.mjs: tsx register(), empty execArgv, another cwd) embeds on 2 workers, same bytes', async () => {
  const bin = fileURLToPath(new URL('../bin/fedsam.mjs', import.meta.url));
  const cliCache = join(root, 'cli-cache');
  const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
    // whole images (--box-crop off), so that the files compare one to one with embedImages on the samples
    execFile(process.execPath, [bin, 'train', '--data', join(root, 'data', 'site-1'), '--cache-dir', cliCache, '--epochs', '1', '--box-crop', 'off', '--out', join(root, 'cli-out')],
      { cwd: tmpdir(), env: { ...process.env, FEDSAM_ENGINE: 'tfjs', FEDSAM_EMBED_WORKERS: '2', FEDSAM_LOG_LEVEL: 'warn' }, maxBuffer: 1 << 24 },
      (err, _stdout, stderr) => resolve({ code: err ? 1 : 0, stderr }));
  });
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /embedding on the main thread/, 'the worker pool started');
  await embedImages(loaded, cacheAt('inline'), samples, { quiet: true, workers: 0 });
  const files = async (dir: string) => (await readdir(dir, { recursive: true })).filter((f) => f.endsWith('.safetensors')).sort();
  const mine = await files(cliCache);
  assert.equal(mine.length, 4);
  assert.deepEqual(mine, await files(join(root, 'inline')));
  for (const f of mine) assert.ok((await readFile(join(cliCache, f))).equals(await readFile(join(root, 'inline', f))), `${f} differs`);
});

test('default worker count and shared weights', () => {
  const saved = process.env.FEDSAM_EMBED_WORKERS;
  try {
    delete process.env.FEDSAM_EMBED_WORKERS;
    const two = Math.min(2, availableParallelism()) >= 2 ? 2 : 0;
    const vitb = samVitBaseConfig();
    assert.equal(defaultEmbedWorkers(3, vitb), 0, 'few images: this thread');
    assert.equal(defaultEmbedWorkers(4, vitb), two, 'ViT-B: workers from 4 images');
    // fedsam-tiny (a 32×32 grid, 0.65 GFLOP): ~0.13 s/image on wasm pays for the pool's start-up from ~50 images; ~4 s on cpu from 4
    const cpu = tf.getBackend() === 'cpu';
    assert.equal(defaultEmbedWorkers(16, loaded.config), cpu ? two : 0);
    assert.equal(defaultEmbedWorkers(200, loaded.config), two);
    assert.ok(encoderGflop(vitb) > 500 && encoderGflop(loaded.config) < 2);
    process.env.FEDSAM_EMBED_WORKERS = '1';
    assert.equal(defaultEmbedWorkers(10), 1);
    process.env.FEDSAM_EMBED_WORKERS = 'two';
    assert.throws(() => defaultEmbedWorkers(10), /FEDSAM_EMBED_WORKERS/);
  } finally {
    if (saved === undefined) delete process.env.FEDSAM_EMBED_WORKERS;
    else process.env.FEDSAM_EMBED_WORKERS = saved;
  }
  const w = sharedVisionWeights(loaded.model);
  assert.ok(w.entries.every((e) => e.name.startsWith('vision_encoder.')));
  const n = [...loaded.model.weights.keys()].filter((k) => k.startsWith('vision_encoder.')).length;
  assert.equal(w.entries.length, n);
  const last = w.entries[w.entries.length - 1];
  assert.equal(w.buffer.byteLength, last.offset + 4 * last.length);
});
