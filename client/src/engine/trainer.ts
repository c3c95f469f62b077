// The local fine-tuning engine: what a site does between two federated rounds, and `fedsam train` on its own.
// Images are embedded once (cache); each step reads cached embeddings, builds box prompts (jittered while
// training) and low-res targets, and takes a DiceCE + Adam step on the mask decoder only.
import * as tf from '@tensorflow/tfjs';
import type { HostTensor } from '@fedsam/shared/safetensors';
import type { LoadedModel } from '@fedsam/shared/model/presets';
import { trainStep, trainableDecoderNames, type ProximalTerm, type StepResult } from '@fedsam/shared/train/step';
import { DataParallel, dataParallelPays, disposeBatch, hostToBatch, type HostHalf } from './dataParallel.ts';
import { adamInit, adamDispose, adamStepCount, ADAM_DEFAULTS, type AdamState } from '@fedsam/shared/train/adam';
import { warmupLr } from '@fedsam/shared/train/lr';
import { postProcessMask, rescaleBoxes, type SamPreprocessed } from '@fedsam/shared/processor';
import { inferenceFor } from '@fedsam/shared/samInference';
import { currentEngine } from '@fedsam/shared/inference';
import type { Sample, Box } from '../data/types.ts';
import { Rng } from '../data/rng.ts';
import { boxPrompt } from '../data/prompts.ts';
import type { BoxJitter } from '@fedsam/shared/train/boxJitter';
import { dice, iou } from '../data/metrics.ts';
import { filledBox } from '../data/mask.ts';
import { grayFromRGB, otsuInBox } from '../data/otsuInBox.ts';
import type { EmbeddingCache, CachedEmbedding } from './cache.ts';
import { createProgress } from './progress.ts';
import { EmbedPool, defaultEmbedWorkers } from './embedPool.ts';

/** A sample ready for training: cached embedding key, sizes, and its ground truth in the low-res mask frame. */
export interface EngineItem {
  sample: Sample;
  key: string;
  originalSize: [number, number];
  reshapedSize: [number, number];
  /** 0/1 at the low-res size L×L (L = 4 × embedding grid), in the padded model-input frame. */
  target: Uint8Array;
}

export function lowResSize(loaded: LoadedModel): number {
  return 4 * loaded.config.prompt.imageEmbeddingSize;
}

/**
 * Ground truth in the low-res frame: the low-res pixel (u, v) covers model-input pixels around ((v+½)f, (u+½)f),
 * f = pad / L; map that back to the original image (nearest) or to 0 in the padding.
 */
export function lowResTarget(mask: Uint8Array, originalSize: [number, number], reshapedSize: [number, number], pad: number, L: number): Uint8Array {
  const [H, W] = originalSize;
  const [h, w] = reshapedSize;
  const f = pad / L;
  const out = new Uint8Array(L * L);
  for (let u = 0; u < L; u++) {
    const ym = (u + 0.5) * f;
    if (ym >= h) break;
    const y = Math.min(H - 1, Math.floor((ym * H) / h));
    for (let v = 0; v < L; v++) {
      const xm = (v + 0.5) * f;
      if (xm >= w) break;
      const x = Math.min(W - 1, Math.floor((xm * W) / w));
      out[u * L + v] = mask[y * W + x] ? 1 : 0;
    }
  }
  return out;
}

/** Box in original pixels -> model-input frame, as SamProcessor rescales it. */
export function modelBox(box: Box, originalSize: [number, number], reshapedSize: [number, number]): number[] {
  return rescaleBoxes([box], originalSize, reshapedSize)[0]!;
}

export interface EmbedOptions {
  quiet?: boolean;
  label?: string;
  /**
   * Worker threads for the vision encoder: 0 = embed on this thread. Default: defaultEmbedWorkers() = min(2, cores)
   * on the wasm/cpu backends when ≥ 4 images wait and that saves more than the pool's start-up (FEDSAM_EMBED_WORKERS
   * overrides). Results are bit-identical either way.
   */
  workers?: number;
}

type EmbeddedSizes = { key: string; originalSize: [number, number]; reshapedSize: [number, number] };

/** How errors name an image: its file (and slice), and the first sample that uses it. */
export function describeImage(s: Sample): string {
  const src = s.source.kind === 'file' ? s.source.path : `${s.source.path} (axis ${s.source.axis}, slice ${s.source.index})`;
  return `image ${src} (sample ${s.id})`;
}

/** Read and preprocess one image (what overlaps with the encoder running on the previous one). */
async function preprocessSample(loaded: LoadedModel, s: Sample): Promise<SamPreprocessed> {
  try {
    return loaded.processor.preprocessRGB(await s.loadImage());
  } catch (err) {
    throw new Error(`embedding ${describeImage(s)} failed: ${(err as Error).message}`, { cause: err });
  }
}

/** The vision encoder on this thread's engine (ONNX Runtime runs it on its own intra-op threads). */
async function embedPreprocessed(loaded: LoadedModel, s: Sample, pre: SamPreprocessed): Promise<CachedEmbedding> {
  try {
    const e = await inferenceFor(loaded).embed({ data: pre.pixelValues, shape: pre.shape });
    return { data: e.data, shape: e.shape as CachedEmbedding['shape'], originalSize: pre.originalSize as [number, number], reshapedSize: pre.reshapedInputSize as [number, number] };
  } catch (err) {
    throw new Error(`embedding ${describeImage(s)} failed: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Embed every distinct image that is not cached yet, with a progress bar: on a pool of worker threads (one encoder
 * per core; see embedPool.ts) or on this thread. Images are read on this thread; the cache is written here.
 */
export async function embedImages(loaded: LoadedModel, cache: EmbeddingCache, samples: readonly Sample[], opts: EmbedOptions = {}):
  Promise<{ items: Map<string, EmbeddedSizes>; computed: number; seconds: number; workers: number }> {
  const t0 = performance.now();
  const byImage = new Map<string, Sample>();
  for (const s of samples) if (!byImage.has(s.imageKey)) byImage.set(s.imageKey, s);
  const done = new Map<string, EmbeddedSizes>();
  const bar = createProgress(opts.label ?? 'embedding images', byImage.size, opts);
  let computed = 0;
  let used = 0;
  const todo: { imageKey: string; sample: Sample; key: string }[] = [];
  const store = async (t: (typeof todo)[number], e: CachedEmbedding) => {
    await cache.put(t.key, e);
    computed++;
    done.set(t.imageKey, { key: t.key, originalSize: e.originalSize, reshapedSize: e.reshapedSize });
    bar.tick();
  };
  try {
    for (const [imageKey, sample] of byImage) {
      const key = cache.keyFor(imageKey);
      const e = await cache.get(key);
      if (e) {
        done.set(imageKey, { key, originalSize: e.originalSize, reshapedSize: e.reshapedSize });
        bar.tick();
      } else todo.push({ imageKey, sample, key });
    }
    // ONNX Runtime uses every core itself; the worker pool is for tfjs's single-threaded backends.
    const want = todo.length && currentEngine().name === 'tfjs' ? (opts.workers ?? defaultEmbedWorkers(todo.length, loaded.config)) : 0;
    let pool: EmbedPool | undefined;
    if (want > 0) {
      try {
        pool = await EmbedPool.create(loaded, { workers: want });
      } catch (e) {
        if (!opts.quiet) process.stderr.write(`embedding on the main thread: ${(e as Error).message}\n`);
      }
    }
    if (pool) {
      used = pool.size;
      const p = pool;
      // 2 jobs per worker in flight: the next image is read and queued while the current one is encoded.
      let next = 0;
      let failure: Error | undefined;
      const lane = async () => {
        while (!failure && next < todo.length) {
          const t = todo[next++];
          const name = describeImage(t.sample);
          try {
            const image = await t.sample.loadImage().catch((err: Error) => { throw new Error(`embedding ${name} failed: ${err.message}`, { cause: err }); });
            await store(t, await p.embed(image, name));
          } catch (e) {
            failure ??= e as Error;
          }
        }
      };
      try {
        await Promise.all(Array.from({ length: 2 * p.size }, lane));
      } finally {
        await p.close();
      }
      if (failure) throw failure;
    } else {
      // The next image is read and preprocessed while the encoder runs on this one.
      let next = todo.length ? preprocessSample(loaded, todo[0].sample) : undefined;
      for (let i = 0; i < todo.length; i++) {
        const pre = await next!;
        next = i + 1 < todo.length ? preprocessSample(loaded, todo[i + 1].sample) : undefined;
        next?.catch(() => undefined); // awaited (and reported) in its turn
        await store(todo[i], await embedPreprocessed(loaded, todo[i].sample, pre));
      }
    }
  } finally {
    bar.stop();
  }
  const items = new Map<string, EmbeddedSizes>();
  for (const imageKey of byImage.keys()) items.set(imageKey, done.get(imageKey)!);
  return { items, computed, seconds: (performance.now() - t0) / 1000, workers: used };
}

/** Embed (if needed) and build engine items with their low-res targets. */
export async function prepareItems(loaded: LoadedModel, cache: EmbeddingCache, samples: readonly Sample[], opts: { quiet?: boolean; workers?: number } = {}): Promise<EngineItem[]> {
  const { items } = await embedImages(loaded, cache, samples, opts);
  const L = lowResSize(loaded);
  const pad = loaded.processor.config.pad_size.height;
  const out: EngineItem[] = [];
  for (const s of samples) {
    const it = items.get(s.imageKey)!;
    out.push({ sample: s, key: it.key, originalSize: it.originalSize, reshapedSize: it.reshapedSize, target: lowResTarget(await s.loadMask(), it.originalSize, it.reshapedSize, pad, L) });
  }
  return out;
}

/**
 * Point prompts for one item, drawn from its low-res target (cheap: no full-resolution mask needed): positives on
 * object pixels, negatives on background pixels inside the (jittered) box, else anywhere in the image. Coordinates
 * are pixel centres in the model-input frame. A missing point (object too small at low-res) is HF padding (-10).
 */
export function samplePointsLowRes(it: EngineItem, box: number[], L: number, pad: number, want: { positive: number; negative: number }, rng: Rng):
  { points: number[][]; labels: number[] } {
  const f = pad / L;
  const [h, w] = it.reshapedSize;
  const inBox = (u: number, v: number) => (v + 0.5) * f >= box[0] && (v + 0.5) * f <= box[2] && (u + 0.5) * f >= box[1] && (u + 0.5) * f <= box[3];
  const pos: number[] = [], negBox: number[] = [], neg: number[] = [];
  for (let u = 0; u < L && (u + 0.5) * f < h; u++) {
    for (let v = 0; v < L && (v + 0.5) * f < w; v++) {
      const k = u * L + v;
      if (it.target[k]) pos.push(k);
      else if (inBox(u, v)) negBox.push(k);
      else neg.push(k);
    }
  }
  const points: number[][] = [];
  const labels: number[] = [];
  const draw = (pool: number[], label: number, n: number) => {
    for (let i = 0; i < n; i++) {
      if (!pool.length) { points.push([-10, -10]); labels.push(-10); continue; }
      const k = pool[rng.int(0, pool.length - 1)];
      // pixel index whose centre (the prompt encoder adds +0.5) is the low-res pixel's centre
      points.push([((k % L) + 0.5) * f - 0.5, (Math.floor(k / L) + 0.5) * f - 0.5]);
      labels.push(label);
    }
  };
  draw(pos, 1, want.positive);
  draw(negBox.length ? negBox : neg, 0, want.negative);
  return { points, labels };
}

/** A batch as host arrays: cached embeddings, boxes, low-res targets (and optional points). */
async function loadHostBatch(cache: EmbeddingCache, items: readonly EngineItem[], boxes: number[][], L: number,
  points?: { points: number[][]; labels: number[] }[]): Promise<HostHalf> {
  const embs: CachedEmbedding[] = [];
  for (const it of items) {
    const e = await cache.get(it.key);
    if (!e) throw new Error(`embedding for ${it.sample.id} vanished from the cache at ${cache.dir}`);
    embs.push(e);
  }
  const [, h, w, C] = embs[0].shape;
  const B = items.length;
  const flat = new Float32Array(B * h * w * C);
  embs.forEach((e, i) => flat.set(e.data, i * h * w * C));
  const tgt = new Float32Array(B * L * L);
  items.forEach((it, i) => { for (let j = 0; j < L * L; j++) tgt[i * L * L + j] = it.target[j]; });
  return {
    emb: flat, embShape: [B, h, w, C], boxes, target: tgt, targetShape: [B, 1, L, L],
    points: points?.map((p) => p.points), labels: points?.map((p) => [p.labels]),
  };
}

export interface EvalMetrics {
  n: number;
  /** Mean Dice / IoU at the original resolution (after post-processing). */
  dice: number;
  iou: number;
  /** Mean Dice / IoU at the low-res mask size. */
  dice256: number;
  iou256: number;
  /** Mean Dice of the filled tight box (the baseline to beat). */
  boxDice: number;
  /** Mean Dice of Otsu's threshold inside the box (data/otsuInBox.ts); only with `baselines: true`. */
  otsuDice?: number;
  /** One record per object, in item order; only with `baselines: true`. */
  objects?: ObjectMetrics[];
  loss?: number;
}

/** Metrics of one object at the original resolution, beside its two baselines. */
export interface ObjectMetrics {
  id: string;
  area: number;
  dice: number;
  iou: number;
  boxDice: number;
  otsuDice: number;
}

/** Validation metrics with the exact box prompt (or noisy ones: `promptJitter`). */
export async function evaluateItems(loaded: LoadedModel, cache: EmbeddingCache, items: readonly EngineItem[],
  opts: {
    batchSize?: number;
    onPrediction?: (it: EngineItem, fullMask: Uint8Array, promptBox: Box) => Promise<void> | void;
    /** Also compute the Otsu-in-box baseline and per-object records (decodes every image once more). */
    baselines?: boolean;
    /**
     * Prompt with noisy boxes instead of the tight one (drawn in item order from `seed`, rounded to whole pixels, as a
     * hand-drawn box is); the box and Otsu baselines use the same boxes. A sample's own promptBox (drawn before
     * cropping: engine/site.ts) comes first.
     */
    promptJitter?: { jitter: BoxJitter; seed: number };
  } = {}): Promise<EvalMetrics> {
  const L = lowResSize(loaded);
  const bs = opts.batchSize ?? 4;
  const pad = loaded.processor.config.pad_size;
  let sd = 0, si = 0, sd256 = 0, si256 = 0, sbox = 0, sotsu = 0;
  const objects: ObjectMetrics[] = [];
  let grayOf: { key: string; gray: Uint8Array } | undefined; // label-indexed masks: several objects share one image
  const pj = opts.promptJitter;
  const rng = pj ? new Rng(pj.seed).fork('eval-boxes') : undefined;
  const prompts = items.map((it): Box => it.sample.promptBox ?? (pj
    ? boxPrompt(it.sample.box, it.sample.width, it.sample.height, rng, pj.jitter).map(Math.round) as Box
    : it.sample.box));
  for (let i = 0; i < items.length; i += bs) {
    const chunk = items.slice(i, i + bs);
    const boxes = chunk.map((it, j) => modelBox(prompts[i + j]!, it.originalSize, it.reshapedSize));
    const batch = await loadHostBatch(cache, chunk, boxes, L);
    const out = await inferenceFor(loaded).decode({
      embeddingsNHWC: { data: batch.emb, shape: batch.embShape },
      inputBoxes: { data: Float32Array.from(boxes.flat()), shape: [chunk.length, 1, 4] },
      multimask: false,
    });
    const logits = out.predMasks.data;
    for (let j = 0; j < chunk.length; j++) {
      const it = chunk[j];
      const low = logits.subarray(j * L * L, (j + 1) * L * L);
      const pred256 = new Uint8Array(L * L);
      for (let k = 0; k < L * L; k++) pred256[k] = low[k] > 0 ? 1 : 0;
      sd256 += dice(pred256, it.target);
      si256 += iou(pred256, it.target);
      const full = postProcessMask(low, [L, L], it.originalSize, it.reshapedSize, pad);
      const bin = new Uint8Array(full.length);
      for (let k = 0; k < full.length; k++) bin[k] = full[k] > 0 ? 1 : 0;
      const gt = await it.sample.loadMask();
      const d = dice(bin, gt), io = iou(bin, gt);
      const box = prompts[i + j]!;
      const boxD = dice(filledBox(box, it.sample.width, it.sample.height), gt);
      sd += d;
      si += io;
      sbox += boxD;
      if (opts.baselines) {
        if (grayOf?.key !== it.sample.imageKey) {
          const img = await it.sample.loadImage();
          grayOf = { key: it.sample.imageKey, gray: grayFromRGB(img.data, img.width, img.height) };
        }
        const otsuD = dice(otsuInBox(grayOf.gray, it.sample.width, it.sample.height, box).mask, gt);
        sotsu += otsuD;
        objects.push({ id: it.sample.id, area: it.sample.area, dice: d, iou: io, boxDice: boxD, otsuDice: otsuD });
      }
      if (opts.onPrediction) await opts.onPrediction(it, bin, box);
    }
  }
  const n = items.length || 1;
  const m: EvalMetrics = { n: items.length, dice: sd / n, iou: si / n, dice256: sd256 / n, iou256: si256 / n, boxDice: sbox / n };
  return opts.baselines ? { ...m, otsuDice: sotsu / n, objects } : m;
}

export interface TrainOptions {
  epochs: number;
  lr: number;
  batchSize: number;
  seed: number;
  /** Box-prompt noise while training (boxJitter.ts); default: the model's own (LoadedModel.recommendedBoxJitter). */
  jitter?: BoxJitter;
  /** Proximal weight μ: the loss gains μ/2·‖w − anchor‖² (FedProx; Ditto's personal model with μ = λ). */
  proximalMu?: number;
  /** The proximal term's anchor; default: the weights in the model when training starts (FedProx's global). */
  proximalAnchor?: ReadonlyMap<string, HostTensor>;
  /**
   * Adam state to continue from (a site keeping its optimizer across federated rounds); the caller owns it and it
   * is updated in place. Default: a fresh Adam, disposed at the end.
   */
  adam?: AdamState;
  /**
   * Linear learning-rate warm-up over the optimizer's first N steps: lr · min(1, t / N), t = Adam's step count
   * (carried over with a kept `adam`). A fresh Adam's first bias-corrected steps move every weight by about lr
   * whatever its gradient; warming up keeps that jolt small. 0 = none.
   */
  warmupSteps?: number;
  /**
   * Split each batch over this thread and a worker (default: when it pays, see dataParallelPays; never with FedProx).
   * A DataParallel (startDataParallel) is used as given and left running, for callers that train again and again.
   */
  dataParallel?: boolean | DataParallel;
  /** Also prompt with points sampled inside (positive) / outside but within the box (negative) the object. */
  points?: { positive: number; negative: number };
  /**
   * SCAFFOLD's drift correction c − c_i (driftControl.ts): after every optimizer step each weight also moves by
   * −lr·(c − c_i), lr being that step's. Names not in the map are not corrected.
   */
  driftCorrection?: ReadonlyMap<string, HostTensor>;
  quiet?: boolean;
  /** Called after each epoch (with validation metrics when val items were given). */
  onEpoch?: (m: EpochMetrics) => void | Promise<void>;
  /** Called after each step: steps done and in all, over all epochs (live views). */
  onStep?: (p: { done: number; total: number; epoch: number; epochs: number; loss: number }) => void;
}

export interface EpochMetrics {
  epoch: number; trainLoss: number; trainDice: number; steps: number; seconds: number;
  /** Sum of the learning rates of this epoch's steps (SCAFFOLD's K·η). */
  lrSum: number;
  val?: EvalMetrics;
}

/** A data-parallel worker for this model, to pass as TrainOptions.dataParallel to several trainDecoder calls. */
export function startDataParallel(loaded: LoadedModel): Promise<DataParallel> {
  return DataParallel.start(loaded, trainableDecoderNames(loaded.model.decoderParameterNames(), loaded.config.decoder.num_multimask_outputs));
}

/**
 * Whether a training run splits its batches over two threads: as `dataParallel` says, by default when it pays;
 * never for FedProx (its term is not split) nor batches of one.
 */
export function usesDataParallel(loaded: LoadedModel, o: Pick<TrainOptions, 'dataParallel' | 'batchSize' | 'proximalMu'>): boolean {
  const asked = o.dataParallel === undefined ? dataParallelPays(loaded, o.batchSize) : o.dataParallel !== false;
  return asked && !((o.proximalMu ?? 0) > 0) && o.batchSize >= 2;
}

/** Fine-tune the mask decoder in place. Returns per-epoch metrics. */
export async function trainDecoder(loaded: LoadedModel, cache: EmbeddingCache, train: readonly EngineItem[], val: readonly EngineItem[], opts: TrainOptions): Promise<EpochMetrics[]> {
  if (train.length === 0) throw new Error('no training samples');
  const model = loaded.model;
  const names = trainableDecoderNames(model.decoderParameterNames(), loaded.config.decoder.num_multimask_outputs);
  const adam = opts.adam ?? adamInit();
  const warmup = opts.warmupSteps ?? 0;
  // the step about to be taken is Adam's t; its lr follows the warm-up
  const adamOptsAt = () => ({ ...ADAM_DEFAULTS, lr: warmupLr(opts.lr, adamStepCount(adam) + 1, warmup) });
  const L = lowResSize(loaded);
  const rng = new Rng(opts.seed).fork('train');
  let proximal: ProximalTerm | undefined;
  if (opts.proximalMu && opts.proximalMu > 0) {
    const anchor = opts.proximalAnchor;
    proximal = { mu: opts.proximalMu, global: new Map(names.map((n) => {
      const a = anchor?.get(n);
      return [n, a ? tf.tensor(a.data as Float32Array, a.shape, 'float32') : model.weights.get(n)!.clone()];
    })) };
  }
  const history: EpochMetrics[] = [];
  const jitter = opts.jitter ?? loaded.recommendedBoxJitter;
  const shared = opts.dataParallel instanceof DataParallel ? opts.dataParallel : undefined;
  const dp = usesDataParallel(loaded, opts) ? (shared ?? await DataParallel.start(loaded, names)) : undefined;
  const totalSteps = Math.ceil(train.length / opts.batchSize) * opts.epochs;
  let doneSteps = 0;
  const trainable = new Set(names);
  const correction = opts.driftCorrection
    ? new Map([...opts.driftCorrection].filter(([n]) => trainable.has(n)).map(([n, t]) => [n, tf.tensor(t.data as Float32Array, t.shape, 'float32')]))
    : undefined;
  try {
    for (let epoch = 1; epoch <= opts.epochs; epoch++) {
      const t0 = performance.now();
      const order = [...train.keys()];
      rng.shuffle(order);
      let lossSum = 0, diceSum = 0, steps = 0, lrSum = 0;
      const bar = createProgress(`epoch ${epoch}/${opts.epochs}`, Math.ceil(order.length / opts.batchSize), { quiet: opts.quiet });
      for (let i = 0; i < order.length; i += opts.batchSize) {
        const chunk = order.slice(i, i + opts.batchSize).map((k) => train[k]);
        const boxes = chunk.map((it) => modelBox(boxPrompt(it.sample.box, it.sample.width, it.sample.height, rng, jitter), it.originalSize, it.reshapedSize));
        const pts = opts.points && opts.points.positive + opts.points.negative > 0
          ? chunk.map((it, j) => samplePointsLowRes(it, boxes[j], L, loaded.processor.config.pad_size.height, opts.points!, rng)) : undefined;
        let r: StepResult;
        const stepOpts = adamOptsAt();
        if (dp && chunk.length >= 2) {
          const half = Math.ceil(chunk.length / 2);
          const first = await loadHostBatch(cache, chunk.slice(0, half), boxes.slice(0, half), L, pts?.slice(0, half));
          const second = await loadHostBatch(cache, chunk.slice(half), boxes.slice(half), L, pts?.slice(half));
          const batch = hostToBatch(first);
          try { r = await dp.step(loaded, batch, { second, firstSize: half }, adam, stepOpts); } finally { disposeBatch(batch); }
        } else {
          const batch = hostToBatch(await loadHostBatch(cache, chunk, boxes, L, pts));
          try { r = trainStep(model, batch, names, adam, stepOpts, proximal); } finally { disposeBatch(batch); }
        }
        if (!Number.isFinite(r.loss)) throw new Error(`training diverged: loss ${r.loss} at epoch ${epoch} (try a smaller --lr)`);
        if (correction) applyDriftCorrection(model.weights, correction, stepOpts.lr);
        lrSum += stepOpts.lr;
        lossSum += r.loss;
        diceSum += 1 - r.dice;
        steps++;
        bar.tick();
        opts.onStep?.({ done: ++doneSteps, total: totalSteps, epoch, epochs: opts.epochs, loss: r.loss });
      }
      bar.stop();
      const m: EpochMetrics = { epoch, trainLoss: lossSum / steps, trainDice: diceSum / steps, steps, lrSum, seconds: (performance.now() - t0) / 1000 };
      if (val.length) m.val = await evaluateItems(loaded, cache, val, { batchSize: opts.batchSize });
      history.push(m);
      await opts.onEpoch?.(m);
    }
  } finally {
    if (adam !== opts.adam) adamDispose(adam);
    if (dp && dp !== shared) await dp.close();
    if (proximal) for (const t of proximal.global.values()) t.dispose();
    if (correction) tf.dispose([...correction.values()]);
  }
  return history;
}

/** w ← w − lr·(c − c_i) for every corrected weight (tensors replaced, old ones disposed). */
function applyDriftCorrection(weights: Map<string, tf.Tensor>, correction: ReadonlyMap<string, tf.Tensor>, lr: number): void {
  for (const [n, c] of correction) {
    const w = weights.get(n)!;
    weights.set(n, tf.tidy(() => tf.sub(w, tf.mul(c, lr))));
    w.dispose();
  }
}
