// fedsam pretrain: train a whole SAM (vision encoder, prompt encoder, mask decoder) from random weights on a
// generated corpus, the way SAM was trained (promptable segmentation of many objects), and write an HF model folder.
import { Option, type Command } from 'commander';
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { architectureConfig, configSize, parseArchitecture } from '@fedsam/shared/pretrain/architecture';
import { runPretrain, PretrainOptionsSchema } from '@fedsam/shared/pretrain/loop';
import type { SampleSource } from '@fedsam/shared/pretrain/sample';
import { corpusSource } from '@fedsam/shared/pretrain/corpus';
import { plainScenes } from '@fedsam/shared/pretrain/plainScenes';
import { withPlainScenes } from '@fedsam/shared/pretrain/plainMix';
import { withBoxCrops } from '@fedsam/shared/pretrain/cropScenes';
import { growVisionEncoder } from '@fedsam/shared/pretrain/grow';
import { halvePatches } from '@fedsam/shared/pretrain/refine';
import { withColourJitter } from '@fedsam/shared/pretrain/colourJitter';
import { BOX_CROP_CONTEXT } from '@fedsam/shared/boxCrop';
import { loadSamCheckpoint } from '@fedsam/shared/checkpoint/load';
import { hashWeights } from '@fedsam/shared/checkpoint/hash';
import { modelFolder } from '@fedsam/shared/model/builtin';
import { synthSampleSource } from '@fedsam/client/data/synthSource';
import { checkEvalData, evaluateCheckpoint, type CheckpointEval } from '@fedsam/client/local/checkpointEval';
import { parseFraction, parseNonNegInt, parseProbability, parsePositiveFloat, parsePositiveInt } from '../args.ts';
import { print, timestampedRun } from '../options.ts';

/** Corpora a run can draw from, by name (the name is recorded in the checkpoint). */
export const CORPORA: Record<string, { describe: string; make: (curriculum: number) => SampleSource }> = {
  corpus: {
    describe: 'the pretraining corpus, train split (docs/corpus.md): 10 shape families x 6 appearance regimes',
    make: (curriculum) => corpusSource({ split: 'train', curriculum: curriculum > 0 ? { rampSamples: curriculum, floor: CURRICULUM_FLOOR } : undefined }),
  },
  synth: { describe: 'the synthetic site generator (fedsam synth), a new non-IID style per image', make: () => synthSampleSource(256) },
  plain: { describe: 'diagnostic: 2-3 bright squares or discs on dark noise; shows in minutes whether a model learns to pick the prompted object', make: () => plainScenes },
};

/** Share of easy scenes that stays after the curriculum's ramp. */
const CURRICULUM_FLOOR = 0.2;
/** Plain scenes first and kept in the mix (plainMix.ts). */
const PLAIN_WARMUP = 2400;
const PLAIN_SHARE = 0.3;
/** Default ramp of the curriculum, in samples. */
const CURRICULUM_SAMPLES = 16000;

const D = PretrainOptionsSchema.parse({});

/** How the shipped built-in model was made (shared/models/fedsam-tiny; README, "Pretraining a small SAM"). */
export const REPRODUCE_HELP = `
The built-in fedsam-tiny (shared/models/fedsam-tiny) was made by three runs, each continuing the one before:
  fedsam synth --generator corpus --split heldout --seed 1 --images 24 --out data/heldout
  fedsam pretrain --out models/stage1 --steps 4000 --batch-size 8 --lr 2e-3 --warmup 100 --seed 1 --checkpoint-every 100 --eval data/heldout
  fedsam pretrain --init models/stage1 --out models/stage2 --colour-jitter 0.5 --crop-share 0.8 --curriculum 1 --plain-warmup 0 --plain-share 0.3 --steps 2000 --lr 1e-3 --warmup 100 --seed 3 --checkpoint-every 250 --eval data/heldout
  fedsam pretrain --init models/stage2 --halve-patches --out models/fedsam-tiny --colour-jitter 0.5 --crop-share 0.8 --curriculum 1 --plain-warmup 0 --plain-share 0.3 --steps 2000 --lr 1e-3 --warmup 100 --seed 5 --checkpoint-every 250 --eval data/heldout
The first from random weights (the default shape, 16-pixel patches; corpus, curriculum 16000 and plain scenes ${PLAIN_WARMUP}
first then ${PLAIN_SHARE} of the samples: the defaults): 0.63 s per step on 2 CPU cores (wasm backend, a worker thread takes half
of each batch), 42 minutes here. The second with 80% of the samples one object in its box crop, as the model sees an
object at inference (the folder declares box crops: fedsam_box_crop 2), and half of all samples in random colours:
0.52 s per step, 18 minutes. The third halves the patches (8 pixels: a 32x32 grid and 128x128 low-res masks), the
finer model starting from the second seeing the image at twice the size: 1.6 s per step, 55 minutes. Held-out
box-prompt Dice in box crops on the corpus's held-out shape families and regimes (seed 1): 0.602, 0.673, 0.695 after
each run (box baseline 0.629, Otsu-in-box 0.719; on the whole image 0.357, 0.401, 0.508); on a second held-out seed
never looked at, 0.720 at the end (Otsu 0.710). The model folder holds the third run's eval-log.jsonl, the second's as
eval-log.stage2.jsonl and the first's as eval-log.stage1.jsonl (whole-image Dice only). Whether a model learns to
pick the prompted object at all shows in minutes with --corpus plain (train Dice 0.87 after 300 steps).
--grow-layers N deepens an --init model by identity blocks first (tried: 4 blocks gave +0.01-0.02, not used).
A stopped run continues with the same command and --resume.
Outputs in --out: config.json + model.safetensors + preprocessor_config.json (pass the folder as --model to any
command), checkpoint/ (resumable state: weights, Adam moments, step), pretrain-log.jsonl (loss, Dice, IoU, lr per
step), with --eval eval-log.jsonl (held-out box-prompt Dice per checkpoint, on the whole image and in box crops).`;

/** One line per checkpoint evaluated with --eval. */
const EVAL_LOG = 'eval-log.jsonl';

/** Append an evaluation, dropping entries from this step on (a resumed run evaluates its checkpoints again). */
async function recordEval(file: string, e: CheckpointEval): Promise<void> {
  const kept = (await readFile(file, 'utf8').catch(() => '')).split('\n').filter((l) => l && (JSON.parse(l) as CheckpointEval).step < e.step);
  await writeFile(file, [...kept, JSON.stringify(e)].map((l) => l + '\n').join(''));
}

async function architectureSpec(v: string): Promise<unknown> {
  if (v.trim().endsWith('.json')) return JSON.parse(await readFile(resolve(v), 'utf8'));
  return v;
}

export function registerPretrainCommand(program: Command): Command {
  return program.command('pretrain')
    .description('pretrain a whole SAM (vision encoder, prompt encoder, mask decoder) from random weights on a generated corpus; writes an HF model folder')
    .addOption(new Option('--out <dir>', 'output model folder (also holds checkpoint/ and pretrain-log.jsonl)').default(timestampedRun('pretrain')))
    .addOption(new Option('--corpus <name>', `training images: ${Object.entries(CORPORA).map(([k, c]) => `${k}, ${c.describe}`).join('; ')}`).choices(Object.keys(CORPORA)).default('corpus'))
    .addOption(new Option('--config <arch>', 'architecture: key=value list (layers, width, heads, imageSize, patchSize, windowSize, decoderWidth, decoderLayers, decoderHeads) or a .json file; default: the fedsam-tiny shape (layers=2,width=64,patchSize=16)').default(''))
    .addOption(new Option('--curriculum <samples>', `corpus only: easy scenes first (1-3 large, well-contrasted objects), their share falling linearly from all to ${CURRICULUM_FLOOR} over this many samples; 0 = none`).argParser(parseNonNegInt('--curriculum')).default(CURRICULUM_SAMPLES))
    .addOption(new Option('--plain-warmup <samples>', 'corpus and synth: the first this many samples are plain scenes (--corpus plain), where a model first learns to pick the prompted object').argParser(parseNonNegInt('--plain-warmup')).default(PLAIN_WARMUP))
    .addOption(new Option('--plain-share <fraction>', 'corpus and synth: after the warm-up, this share of the samples stays plain scenes').argParser(parseFraction('--plain-share')).default(PLAIN_SHARE))
    .addOption(new Option('--crop-share <fraction>', `this share of the samples is one object in its box crop (the square of ${BOX_CROP_CONTEXT} box sides around its box that a cropping model segments at inference), the object alone as the target`).argParser(parseProbability('--crop-share')).default(0))
    .addOption(new Option('--colour-jitter <fraction>', 'this share of the samples in randomly transformed colours (channels permuted, mixed, scaled, shifted, some inverted; shared/src/pretrain/colourJitter.ts)').argParser(parseProbability('--colour-jitter')).default(0))
    .addOption(new Option('--init <model>', 'start from this model folder\'s weights (or fedsam-tiny) instead of random ones: continue pretraining a model; its config.json sets the architecture (no --config)'))
    .addOption(new Option('--grow-layers <n>', 'with --init: deepen its vision encoder to this many blocks, the new ones appended as identity blocks (residual outputs at zero; shared/src/pretrain/grow.ts), so training starts from exactly the init model').argParser(parsePositiveInt('--grow-layers')))
    .addOption(new Option('--halve-patches', 'with --init: halve its patch side (16 -> 8 px for fedsam-tiny), doubling the embedding grid and the mask resolution; the finer model starts from the init model seeing the image at twice the size (shared/src/pretrain/refine.ts)'))
    .addOption(new Option('--steps <n>', 'optimizer steps').argParser(parsePositiveInt('--steps')).default(D.steps))
    .addOption(new Option('--batch-size <n>', 'images per step').argParser(parsePositiveInt('--batch-size')).default(D.batchSize))
    .addOption(new Option('--prompts-per-image <n>', 'objects prompted per image').argParser(parsePositiveInt('--prompts-per-image')).default(D.promptsPerImage))
    .addOption(new Option('--lr <lr>', 'peak Adam learning rate (after warm-up; cosine decay to a tenth)').argParser(parsePositiveFloat('--lr')).default(D.lr))
    .addOption(new Option('--warmup <steps>', 'linear learning-rate warm-up steps').argParser(parseNonNegInt('--warmup')).default(D.warmupSteps))
    .addOption(new Option('--seed <n>', 'seed of the initial weights, the samples and the prompts').argParser(parseNonNegInt('--seed')).default(D.seed))
    .addOption(new Option('--checkpoint-every <n>', 'steps between checkpoints (and model-folder writes)').argParser(parsePositiveInt('--checkpoint-every')).default(D.checkpointEvery))
    .addOption(new Option('--eval <dir>', 'at every checkpoint, box-prompt Dice on this held-out folder (images/ + masks/, e.g. fedsam synth --generator corpus --split heldout --seed 1 --images 24 --out DIR) beside the box and Otsu-in-box baselines; logged to eval-log.jsonl'))
    .addOption(new Option('--no-parallel', 'compute each batch on this thread only (default: half of it in a worker thread when there are 2+ cores; tfjs-wasm uses one core per thread)'))
    .addOption(new Option('--resume', 'continue the run in --out from its last checkpoint (same options required)'))
    .addOption(new Option('--quiet', 'no per-step progress lines'))
    .addHelpText('after', REPRODUCE_HELP)
    .action(async (o) => {
      if (o.init && o.config) throw new Error('--init takes the architecture from the model folder: leave out --config');
      if (o.growLayers !== undefined && !o.init) throw new Error('--grow-layers deepens the model given with --init: add --init DIR');
      if (o.halvePatches && !o.init) throw new Error('--halve-patches refines the model given with --init: add --init DIR');
      const loaded = o.init ? await loadSamCheckpoint(modelFolder(o.init)) : undefined;
      const grown = loaded && o.growLayers !== undefined ? growVisionEncoder(loaded.config, loaded.weights, o.growLayers, o.seed) : loaded;
      const init = grown && o.halvePatches ? halvePatches(grown.config, grown.weights) : grown;
      const arch = init ? undefined : parseArchitecture(await architectureSpec(o.config));
      const config = init?.config ?? architectureConfig(arch!);
      const { parameters, bytes } = configSize(config);
      const out = resolve(o.out);
      const curriculum = o.corpus === 'corpus' ? o.curriculum as number : 0;
      const mix = { warmupSamples: o.plainWarmup as number, share: o.plainShare as number };
      const mixed = o.corpus !== 'plain' && (mix.warmupSamples > 0 || mix.share > 0);
      const cropShare = o.cropShare as number, colourShare = o.colourJitter as number;
      const sourceName = (curriculum ? `${o.corpus}+curriculum${curriculum}` : o.corpus) + (mixed ? `+plain${mix.warmupSamples}/${mix.share}` : '')
        + (cropShare > 0 ? `+crops${cropShare}` : '') + (colourShare > 0 ? `+colour${colourShare}` : '');
      const base = CORPORA[o.corpus]!.make(curriculum);
      const plain = mixed ? withPlainScenes(base, mix) : base;
      const cropped = cropShare > 0 ? withBoxCrops(plain, cropShare, config.vision.image_size) : plain;
      const source = colourShare > 0 ? withColourJitter(cropped, colourShare) : cropped;
      print(`pretraining ${arch ? JSON.stringify(arch) : `from ${o.init}${o.growLayers ? ` grown to ${o.growLayers} vision blocks` : ''}${o.halvePatches ? ` with ${config.vision.patch_size}-pixel patches` : ''}`}: ${(parameters / 1e6).toFixed(2)} M parameters, ${(bytes / 1e6).toFixed(1)} MB float32, corpus ${sourceName}, into ${out}`);
      if (o.eval) await checkEvalData(resolve(o.eval));
      const t0 = Date.now();
      let every = 0;
      let lastEval: CheckpointEval | undefined;
      const result = await runPretrain({
        out, config, source, sourceName, resume: !!o.resume,
        ...(init ? { init: { weights: init.weights, name: hashWeights(init.weights) } } : {}),
        options: {
          steps: o.steps, batchSize: o.batchSize, promptsPerImage: o.promptsPerImage, lr: o.lr, warmupSteps: o.warmup,
          seed: o.seed, checkpointEvery: o.checkpointEvery,
        },
        onStep: (s, opts) => {
          every ||= Math.max(1, Math.round(opts.steps / 200));
          if (o.quiet || (s.step % every && s.step !== 1 && s.step !== opts.steps)) return;
          const eta = ((opts.steps - s.step) * s.seconds) / 60;
          print(`step ${s.step}/${opts.steps}  loss ${s.loss.toFixed(4)}  mask ${s.maskLoss.toFixed(4)}  Dice ${s.dice.toFixed(3)}  IoU ${s.iou.toFixed(3)}  lr ${s.lr.toExponential(2)}  ${s.seconds.toFixed(2)} s/step  eta ${eta.toFixed(0)} min`);
        },
        compute: { parallel: o.parallel === false ? false : undefined },
        onCheckpoint: async (step) => {
          if (!o.quiet) print(`checkpoint at step ${step}`);
          if (!o.eval) return;
          lastEval = await evaluateCheckpoint(out, resolve(o.eval), step);
          await recordEval(join(out, EVAL_LOG), lastEval);
          print(`held-out at step ${step}: box-prompt Dice ${lastEval.dice.toFixed(3)} on the whole image, ${lastEval.boxCropDice.toFixed(3)} in box crops, over ${lastEval.n} objects (box ${lastEval.boxDice.toFixed(3)}, Otsu-in-box ${lastEval.otsuDice.toFixed(3)})`);
        },
      });
      print(`done: step ${result.step} in ${((Date.now() - t0) / 60000).toFixed(1)} min; model folder ${out} (use --model ${out})`
        + (lastEval ? `; held-out box-prompt Dice ${lastEval.dice.toFixed(3)}, in box crops ${lastEval.boxCropDice.toFixed(3)} (log: ${join(out, EVAL_LOG)})` : ''));
    });
}
