// The pretraining loop: samples from a SampleSource, SAM-style prompts, whole-model gradients (step.ts), Adam with
// linear warm-up then cosine decay, global gradient-norm clipping. Deterministic for a seed: sample `i` of the run
// is source(i, Rng(`${seed}/sample/${i}`)) and its prompts come from Rng(`${seed}/prompt/${i}`), so a run resumed
// from its checkpoint takes exactly the steps an uninterrupted run takes. Writes into `out`: the model folder
// (config.json, model.safetensors, preprocessor_config.json) at every checkpoint and at the end, checkpoint/ (the
// resumable state) and pretrain-log.jsonl (one line per step).
import { appendFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import { samConfigToJson, type SamConfig } from '../config.ts';
import { saveSamCheckpoint } from '../checkpoint/save.ts';
import { initSamWeights } from '../model/init.ts';
import { SamModel } from '../model/sam.ts';
import { processorFor } from '../model/presets.ts';
import type { SamProcessor } from '../processor.ts';
import { Rng } from '../rng.ts';
import type { HostTensor } from '../safetensors.ts';
import { adamDispose, adamInit, adamStep, ADAM_DEFAULTS, type AdamState } from '../train/adam.ts';
import { hasCheckpoint, loadCheckpoint, saveCheckpoint } from './checkpoint.ts';
import { maskGeometry, samplePrompt } from './prompts.ts';
import { checkSample, type SampleSource } from './sample.ts';
import { clipGradNorm, pretrainableNames, pretrainLossAndGrads, type PretrainItem, type PretrainStats } from './step.ts';
import { lowResTarget } from './targets.ts';
import { PretrainParallel } from './parallel.ts';
import { BOX_CROP_CONTEXT } from '../boxCrop.ts';

export const PretrainOptionsSchema = z.object({
  steps: z.number().int().positive().default(3000),
  batchSize: z.number().int().positive().default(8),
  /** Objects prompted per image: the encoder (most of a step: 4 layers of width 96 at 256 px, 1.3 s of fwd+bwd per image; a prompt adds ~0.05 s) is shared by them. */
  promptsPerImage: z.number().int().positive().default(4),
  /** Peak learning rate (after warm-up). */
  lr: z.number().positive().default(1e-3),
  warmupSteps: z.number().int().nonnegative().default(100),
  /** Cosine decay from lr down to lr·minLrFraction at the last step. */
  minLrFraction: z.number().min(0).max(1).default(0.1),
  weightDecay: z.number().min(0).default(0),
  /** Global gradient-norm clip (0: off). */
  clipNorm: z.number().min(0).default(1),
  iouWeight: z.number().min(0).default(1),
  /** BCE weight in the mask loss (see step.ts). */
  bceWeight: z.number().min(0).default(0.1),
  seed: z.number().int().default(0),
  checkpointEvery: z.number().int().positive().default(50),
}).strict();

/** How a run computes (not part of its identity: a run may resume with another setting). */
export interface PretrainCompute {
  /** Split each batch over this thread and a worker (parallel.ts); default: with 2+ cores and batches of 2+. */
  parallel?: boolean;
}

export type PretrainOptions = z.output<typeof PretrainOptionsSchema>;

export interface StepLog extends PretrainStats {
  step: number;
  lr: number;
  gradNorm: number;
  /** Wall time of this step. */
  seconds: number;
}

export interface PretrainRun {
  out: string;
  config: SamConfig;
  options: Partial<PretrainOptions>;
  source: SampleSource;
  /** Name of the source, recorded in the checkpoint (a resume must use the same). */
  sourceName: string;
  resume?: boolean;
  /** Start from these weights instead of random ones (continue pretraining a model); `name` (e.g. the weights'
   *  hash) is recorded in the checkpoint, so a resume must start from the same. */
  init?: { weights: Map<string, HostTensor>; name: string };
  /** Called after every step (progress display). */
  onStep?: (s: StepLog, options: PretrainOptions) => void;
  /** Called (and awaited) after a checkpoint and the model folder are written. */
  onCheckpoint?: (step: number) => Promise<void> | void;
  /** Stop after this many steps in this call (tests interrupting a run); the run stays resumable. */
  stopAfter?: number;
  compute?: PretrainCompute;
}

export interface PretrainResult { step: number; log: StepLog[]; out: string }

/** Learning rate at (0-based) step s: linear warm-up, then cosine to lr·minLrFraction. */
export function learningRate(o: PretrainOptions, s: number): number {
  if (s < o.warmupSteps) return (o.lr * (s + 1)) / o.warmupSteps;
  const t = o.steps > o.warmupSteps ? (s - o.warmupSteps) / Math.max(1, o.steps - o.warmupSteps - 1) : 1;
  return o.lr * (o.minLrFraction + (1 - o.minLrFraction) * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, t))));
}

/** Turn sample `index` into a batch item: preprocessed pixels and up to promptsPerImage prompts with targets. */
export function makeItem(source: SampleSource, index: number, seed: number, config: SamConfig, processor: SamProcessor, promptsPerImage: number): PretrainItem {
  const sample = source(index, new Rng(`${seed}/sample/${index}`));
  checkSample(sample);
  const { width, height } = sample;
  const pre = processor.preprocessRGB({ data: sample.image, width, height });
  const S = config.vision.image_size, L = 4 * config.prompt.imageEmbeddingSize;
  const scale = S / Math.max(width, height);
  const rng = new Rng(`${seed}/prompt/${index}`);
  const objects = sample.masks.map((m, k) => ({ k, g: maskGeometry(m, width, height) })).filter((o) => o.g);
  rng.shuffle(objects);
  const prompts = objects.slice(0, promptsPerImage).map(({ k, g }) => ({
    prompt: samplePrompt(g!, width, height, scale, rng),
    target: lowResTarget(sample.masks[k]!, width, height, scale, S, L),
  }));
  return { pixelValues: pre.pixelValues, prompts };
}

async function writeModelFolder(out: string, config: SamConfig, weights: Map<string, tf.Tensor>, processor: SamProcessor): Promise<void> {
  const host = new Map<string, HostTensor>();
  for (const [n, t] of weights) host.set(n, { dtype: 'float32', shape: [...t.shape], data: t.dataSync() as Float32Array });
  await saveSamCheckpoint(out, config, host);
  // models of this recipe segment in box crops (README, "Box crops"): the folder says so, as the built-in's does
  await writeFile(join(out, 'preprocessor_config.json'), JSON.stringify({ image_processor_type: 'SamImageProcessor', processor_class: 'SamProcessor', ...processor.config, fedsam_box_crop: BOX_CROP_CONTEXT }, null, 2) + '\n');
}

/** Run (or resume) a pretraining run. */
export async function runPretrain(run: PretrainRun): Promise<PretrainResult> {
  const o = PretrainOptionsSchema.parse(run.options);
  const out = resolve(run.out);
  const logFile = join(out, 'pretrain-log.jsonl');
  const { checkpointEvery: _c, ...identity } = o;
  const runInfo = { options: identity, config: samConfigToJson(run.config), source: run.sourceName, ...(run.init ? { init: run.init.name } : {}) };
  const processor = await processorFor(run.config);
  await mkdir(out, { recursive: true });

  let model: SamModel;
  let adam: AdamState = adamInit();
  let start = 0;
  if (await hasCheckpoint(out)) {
    if (!run.resume) throw new Error(`${out} holds a pretraining checkpoint: pass --resume to continue it, or choose another --out`);
    const ck = (await loadCheckpoint(out))!;
    if (JSON.stringify(ck.state.run) !== JSON.stringify(runInfo)) {
      adamDispose(ck.adam);
      throw new Error(`${out} was pretrained with other settings (${JSON.stringify(ck.state.run)}); resume with the same options, --config and seed, or choose another --out`);
    }
    model = SamModel.fromHost(run.config, ck.weights);
    adam = ck.adam;
    start = ck.state.step;
    // the log keeps exactly the steps the checkpoint holds
    const lines = (await readFile(logFile, 'utf8').catch(() => '')).split('\n').filter((l) => l && (JSON.parse(l) as StepLog).step <= start);
    await writeFile(logFile, lines.map((l) => l + '\n').join(''));
  } else {
    model = SamModel.fromHost(run.config, run.init?.weights ?? initSamWeights(run.config, o.seed));
    await writeFile(logFile, '');
  }
  const names = pretrainableNames(model.weights.keys());
  const log: StepLog[] = [];
  const end = run.stopAfter !== undefined ? Math.min(o.steps, start + run.stopAfter) : o.steps;
  const parallel = (run.compute?.parallel ?? (cpus().length >= 2)) && o.batchSize >= 2 && start < end
    ? await PretrainParallel.start(run.config, model) : undefined;
  try {
    for (let s = start; s < end; s++) {
      const t0 = performance.now();
      const items = Array.from({ length: o.batchSize }, (_, b) => makeItem(run.source, s * o.batchSize + b, o.seed, run.config, processor, o.promptsPerImage));
      const lossOpts = { iouWeight: o.iouWeight, bceWeight: o.bceWeight };
      const { stats, grads } = parallel ? await parallel.lossAndGrads(model, items, names, lossOpts) : pretrainLossAndGrads(model, items, names, lossOpts);
      const gradNorm = clipGradNorm(grads, o.clipNorm);
      const lr = learningRate(o, s);
      adamStep(model.weights, grads, adam, { ...ADAM_DEFAULTS, lr, weightDecay: o.weightDecay });
      tf.dispose([...grads.values()]);
      const entry: StepLog = { step: s + 1, ...stats, lr, gradNorm, seconds: (performance.now() - t0) / 1000 };
      log.push(entry);
      await appendFile(logFile, JSON.stringify(entry) + '\n');
      run.onStep?.(entry, o);
      if ((s + 1) % o.checkpointEvery === 0 || s + 1 === end) {
        await saveCheckpoint(out, { step: s + 1, run: runInfo }, model.weights, adam);
        await writeModelFolder(out, run.config, model.weights, processor);
        await run.onCheckpoint?.(s + 1);
      }
    }
    if (start >= end) await writeModelFolder(out, run.config, model.weights, processor);
    return { step: end, log, out };
  } finally {
    await parallel?.close();
    adamDispose(adam);
    model.dispose();
  }
}
