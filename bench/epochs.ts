// Epoch cost with the embedding cache vs the reference recipe's loop, and 0 / 1 / 2 embedding workers.
//
//   node --import tsx bench/epochs.ts [--variants tiny,vitb-decoder] [--images 16] [--reps 3] [--batch-size 4]
//
// Per variant, on one synthetic site (fresh cache dir each repetition; medians over repetitions):
//   - embed all images: on the main thread, with 1 worker, with 2 workers (+ the pool's start-up cost alone);
//   - epoch 1 = prepareItems (embedding with the default worker count) + trainDecoder's first epoch;
//   - epoch 2 = trainDecoder's second epoch (every embedding is a cache hit);
//   - decoder steps only = the same number of trainStep calls on the same batch sizes, tensors prebuilt
//     (and, separately, what building those batches from the cache took: epoch 2's only other work);
//   - reference loop = one epoch that runs the vision encoder on every sample's image at every step (HF recipe:
//     model(pixel_values, input_boxes) with a frozen encoder), then the same decoder step.
// Variants: 'tiny' = the built-in fedsam-tiny. 'vitb-decoder' = ViT-B's prompt encoder and mask decoder with
// ViT-B-shaped embeddings (64×64×256, 4 MB per cache entry) from a one-layer stand-in encoder: the decoder side is
// ViT-B sized, the encoder is not (the real ViT-B encoder takes minutes per image here, see --vitb-encoder-seconds).
import { parseArgs } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, availableParallelism } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@fedsam/shared/backend';
import { loadModel, processorFor, frozenHashes, type LoadedModel } from '@fedsam/shared/model/presets';
import { parseSamConfig } from '@fedsam/shared/config';
import { initSamWeights } from '@fedsam/shared/model/init';
import { SamModel } from '@fedsam/shared/model/sam';
import { pixelValuesTensor } from '@fedsam/shared/processor';
import { trainStep, trainableDecoderNames } from '@fedsam/shared/train/step';
import { adamInit, adamDispose, ADAM_DEFAULTS } from '@fedsam/shared/train/adam';
import { renderTable, type Cell } from '@fedsam/shared/table';
import { synthesize } from '@fedsam/client/data/synth';
import { loadDataset } from '@fedsam/client/data/datasets';
import type { Sample } from '@fedsam/client/data/types';
import { Rng } from '@fedsam/client/data/rng';
import { boxPrompt } from '@fedsam/client/data/prompts';
import { RECIPE_BOX_JITTER } from '@fedsam/shared/train/boxJitter';
import { EmbeddingCache } from '@fedsam/client/engine/cache';
import { embedImages, prepareItems, trainDecoder, lowResSize, modelBox, type EngineItem } from '@fedsam/client/engine/trainer';
import { EmbedPool, defaultEmbedWorkers, encoderGflop } from '@fedsam/client/engine/embedPool';

const { values: args } = parseArgs({
  options: {
    variants: { type: 'string', default: 'tiny,vitb-decoder' },
    images: { type: 'string', default: '16' },
    'vitb-images': { type: 'string', default: '4' },
    reps: { type: 'string', default: '3' },
    'batch-size': { type: 'string', default: '4' },
    /** A measured ViT-B encoder time per image on this machine, to extrapolate the ViT-B reference loop. */
    'vitb-encoder-seconds': { type: 'string' },
  },
});
const reps = Number(args.reps);
const batchSize = Number(args['batch-size']);
const backend = await initBackend();
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const secs = (t0: number) => (performance.now() - t0) / 1000;

/** ViT-B prompt encoder + mask decoder, 1024-px input, 64×64×256 embeddings from a one-layer, 32-wide stand-in ViT. */
async function vitbDecoderModel(): Promise<LoadedModel> {
  const config = parseSamConfig({
    vision_config: { hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 1, mlp_dim: 64, global_attn_indexes: [0] },
  }, 'vitb-decoder');
  const weights = initSamWeights(config, 1);
  return { source: 'vitb-decoder', config, model: SamModel.fromHost(config, weights), processor: await processorFor(config), ...frozenHashes(weights), recommendedLr: 1e-5, recommendedBoxJitter: RECIPE_BOX_JITTER };
}

/** The batches trainDecoder would build for one epoch (same jitter stream), as prebuilt tensors. */
async function buildBatches(loaded: LoadedModel, cache: EmbeddingCache, items: EngineItem[], seed: number) {
  const L = lowResSize(loaded);
  const rng = new Rng(seed).fork('train');
  const order = [...items.keys()];
  rng.shuffle(order);
  const out: { embeddingsNHWC: tf.Tensor4D; boxes: tf.Tensor3D; target: tf.Tensor4D }[] = [];
  for (let i = 0; i < order.length; i += batchSize) {
    const chunk = order.slice(i, i + batchSize).map((k) => items[k]);
    const embs = await Promise.all(chunk.map(async (it) => (await cache.get(it.key))!));
    const [, h, w, C] = embs[0].shape;
    const flat = new Float32Array(chunk.length * h * w * C);
    embs.forEach((e, j) => flat.set(e.data, j * h * w * C));
    const tgt = new Float32Array(chunk.length * L * L);
    chunk.forEach((it, j) => tgt.set(it.target, j * L * L));
    const boxes = chunk.map((it) => [modelBox(boxPrompt(it.sample.box, it.sample.width, it.sample.height, rng, RECIPE_BOX_JITTER), it.originalSize, it.reshapedSize)]);
    out.push({ embeddingsNHWC: tf.tensor4d(flat, [chunk.length, h, w, C]), boxes: tf.tensor3d(boxes, [chunk.length, 1, 4]), target: tf.tensor4d(tgt, [chunk.length, 1, L, L]) });
  }
  return out;
}

/** trainStep only, on prebuilt batches. */
function decoderStepsOnly(loaded: LoadedModel, batches: Awaited<ReturnType<typeof buildBatches>>, lr: number): number {
  const names = trainableDecoderNames(loaded.model.decoderParameterNames(), loaded.config.decoder.num_multimask_outputs);
  const adam = adamInit();
  const t0 = performance.now();
  for (const b of batches) trainStep(loaded.model, b, names, adam, { ...ADAM_DEFAULTS, lr });
  const s = secs(t0);
  adamDispose(adam);
  return s;
}

/** The reference recipe: every step decodes and encodes its samples' images, then takes the decoder step. */
async function referenceEpoch(loaded: LoadedModel, items: EngineItem[], lr: number, seed: number, maxSteps = Infinity): Promise<{ seconds: number; steps: number }> {
  const names = trainableDecoderNames(loaded.model.decoderParameterNames(), loaded.config.decoder.num_multimask_outputs);
  const adam = adamInit();
  const L = lowResSize(loaded);
  const rng = new Rng(seed).fork('train');
  const order = [...items.keys()];
  rng.shuffle(order);
  let steps = 0;
  const t0 = performance.now();
  for (let i = 0; i < order.length && steps < maxSteps; i += batchSize, steps++) {
    const chunk = order.slice(i, i + batchSize).map((k) => items[k]);
    const pres = await Promise.all(chunk.map(async (it) => loaded.processor.preprocessRGB(await it.sample.loadImage())));
    const emb = tf.tidy(() => loaded.model.imageEmbeddingsNHWC(pixelValuesTensor(pres)));
    const tgt = new Float32Array(chunk.length * L * L);
    chunk.forEach((it, j) => tgt.set(it.target, j * L * L));
    const boxes = chunk.map((it) => [modelBox(boxPrompt(it.sample.box, it.sample.width, it.sample.height, rng, RECIPE_BOX_JITTER), it.originalSize, it.reshapedSize)]);
    const batch = { embeddingsNHWC: emb, boxes: tf.tensor3d(boxes, [chunk.length, 1, 4]), target: tf.tensor4d(tgt, [chunk.length, 1, L, L]) };
    trainStep(loaded.model, batch, names, adam, { ...ADAM_DEFAULTS, lr });
    tf.dispose([batch.embeddingsNHWC, batch.boxes, batch.target]);
  }
  const s = secs(t0);
  adamDispose(adam);
  return { seconds: s, steps };
}

async function bench(variant: string) {
  const nImages = Number(variant === 'tiny' ? args.images : args['vitb-images']);
  const root = await mkdtemp(join(tmpdir(), `fedsam-bench-epochs-${variant}-`));
  try {
    const loaded = variant === 'tiny' ? await loadModel(undefined) : await vitbDecoderModel();
    await synthesize({ out: join(root, 'data'), sites: 1, imagesPerSite: nImages, seed: 7, size: 256 });
    const samples: Sample[] = (await loadDataset(join(root, 'data', 'site-1'))).samples;
    const lr = loaded.recommendedLr;
    const defaultWorkers = defaultEmbedWorkers(nImages, loaded.config);
    let cacheN = 0;
    const freshCache = () => new EmbeddingCache({ dir: join(root, `cache-${cacheN++}`), visionHash: loaded.visionHash, processor: loaded.processor.config });
    const t: Record<string, number[]> = {};
    const add = (k: string, v: number) => (t[k] ??= []).push(v);
    let steps = 0;
    for (let r = 0; r < reps; r++) {
      for (const workers of [0, 1, 2]) add(`embed${workers}`, (await embedImages(loaded, freshCache(), samples, { quiet: true, workers })).seconds);
      // steady state: a started pool (or this thread) on images already in memory, no cache writes
      const rgb = await Promise.all([...new Map(samples.map((s) => [s.imageKey, s])).values()].map((s) => s.loadImage()));
      let t0 = performance.now();
      for (const im of rgb) {
        const e = tf.tidy(() => loaded.model.imageEmbeddingsNHWC(pixelValuesTensor(loaded.processor.preprocessRGB(im))));
        await e.data();
        e.dispose();
      }
      add('steady0', secs(t0));
      for (const workers of [1, 2]) {
        t0 = performance.now();
        const pool = await EmbedPool.create(loaded, { workers });
        add(`poolStart${workers}`, secs(t0));
        t0 = performance.now();
        await Promise.all(rgb.map((im, i) => pool.embed({ ...im, data: im.data.slice() }, `image ${i}`)));
        add(`steady${workers}`, secs(t0));
        await pool.close();
      }

      // the `fedsam train` flow: embed (default workers), then epochs from the cache
      const cache = freshCache();
      t0 = performance.now();
      const items = await prepareItems(loaded, cache, samples, { quiet: true });
      const prep = secs(t0);
      const hist = await trainDecoder(loaded, cache, items, [], { epochs: 2, lr, batchSize, seed: r, quiet: true });
      steps = hist[0].steps;
      add('epoch1', prep + hist[0].seconds);
      add('epoch1steps', hist[0].seconds);
      add('epoch2', hist[1].seconds);

      t0 = performance.now();
      const batches = await buildBatches(loaded, cache, items, r);
      add('assembly', secs(t0));
      add('stepsOnly', decoderStepsOnly(loaded, batches, lr));
      for (const b of batches) tf.dispose([b.embeddingsNHWC, b.boxes, b.target]);

      if (variant === 'tiny') add('reference', (await referenceEpoch(loaded, items, lr, r)).seconds);
    }
    const m = (k: string) => median(t[k]);
    const range = (k: string) => `${Math.min(...t[k]).toFixed(2)}–${Math.max(...t[k]).toFixed(2)}`;
    const nObj = samples.length;
    const rows: Cell[][] = [
      ['embed all, main thread', m('embed0'), range('embed0'), (m('embed0') / nImages).toFixed(3) + ' s/img', '1.00x'],
      ['embed all, 1 worker', m('embed1'), range('embed1'), (m('embed1') / nImages).toFixed(3) + ' s/img', `${(m('embed0') / m('embed1')).toFixed(2)}x`],
      ['embed all, 2 workers', m('embed2'), range('embed2'), (m('embed2') / nImages).toFixed(3) + ' s/img', `${(m('embed0') / m('embed2')).toFixed(2)}x`],
      ['  pool start-up, 1 worker', m('poolStart1'), range('poolStart1'), '', ''],
      ['  pool start-up, 2 workers', m('poolStart2'), range('poolStart2'), '', ''],
      ['  encoder only, main thread', m('steady0'), range('steady0'), (m('steady0') / nImages).toFixed(3) + ' s/img', '1.00x'],
      ['  encoder only, 1 worker (started)', m('steady1'), range('steady1'), (m('steady1') / nImages).toFixed(3) + ' s/img', `${(m('steady0') / m('steady1')).toFixed(2)}x`],
      ['  encoder only, 2 workers (started)', m('steady2'), range('steady2'), (m('steady2') / nImages).toFixed(3) + ' s/img', `${(m('steady0') / m('steady2')).toFixed(2)}x`],
      [`epoch 1 (embed, ${defaultWorkers} workers + steps)`, m('epoch1'), range('epoch1'), '', ''],
      ['epoch 2 (cache hits + steps)', m('epoch2'), range('epoch2'), (m('epoch2') / steps).toFixed(3) + ' s/step', ''],
      ['decoder steps only', m('stepsOnly'), range('stepsOnly'), (m('stepsOnly') / steps).toFixed(3) + ' s/step', ''],
      ['  cache reads + batch building', m('assembly'), range('assembly'), (m('assembly') / steps).toFixed(4) + ' s/step', ''],
    ];
    if (t.reference) rows.push(['reference loop (encoder every step)', m('reference'), range('reference'), '', '']);
    const load = (await import('node:os')).loadavg()[0];
    console.log(`\n## ${variant}: ${nImages} images, ${nObj} objects, batch ${batchSize} -> ${steps} steps/epoch; ` +
      `embedding ${loaded.config.prompt.imageEmbeddingSize}²×${loaded.config.prompt.hidden_size}; encoder ≈ ${encoderGflop(loaded.config).toFixed(1)} GFLOP/image; backend ${backend.name}; ${reps} reps (median, min–max), ${availableParallelism()} cores, load average ${load.toFixed(1)} at the end`);
    console.log(renderTable(['what', 'seconds', 'range', 'per unit', 'speed-up'], rows, { digits: 3 }));
    console.log(`epoch2 / epoch1 = ${(m('epoch2') / m('epoch1')).toFixed(3)};  epoch2 / decoder-steps-only = ${(m('epoch2') / m('stepsOnly')).toFixed(3)}` +
      (t.reference ? `;  reference / epoch2 = ${(m('reference') / m('epoch2')).toFixed(1)}x;  reference / epoch1 = ${(m('reference') / m('epoch1')).toFixed(2)}x` : ''));
    if (variant !== 'tiny' && args['vitb-encoder-seconds']) {
      const enc = Number(args['vitb-encoder-seconds']);
      const ref = nObj * enc + m('stepsOnly');
      const e1 = (nImages * enc) / Math.min(2, availableParallelism()) + m('epoch1steps');
      console.log(`with the real ViT-B encoder at ${enc} s/image (extrapolated): reference loop ≈ ${ref.toFixed(0)} s/epoch every epoch; ` +
        `cached: epoch 1 ≈ ${e1.toFixed(0)} s (2 workers), epoch 2 ≈ ${m('epoch2').toFixed(1)} s`);
    }
    loaded.model.dispose();
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

for (const v of args.variants!.split(',')) await bench(v.trim());
