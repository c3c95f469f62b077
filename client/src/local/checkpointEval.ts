// Box-prompt Dice of a model folder on a fixed held-out data folder, next to the box and Otsu-in-box baselines:
// what `fedsam pretrain --eval DIR` records at every checkpoint. The pretraining log's own Dice mixes prompt kinds
// and curriculum scenes and is taken on the training corpus, so it says little about zero-shot quality.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadDataset } from '../data/datasets.ts';
import { prepareSite } from '../engine/site.ts';
import { evaluateItems } from '../engine/trainer.ts';
import { loadModel } from '@fedsam/shared/model/presets';
import { BOX_CROP_CONTEXT } from '@fedsam/shared/boxCrop';

export interface CheckpointEval {
  step: number;
  /** Objects evaluated. */
  n: number;
  /** Mean box-prompt Dice of the model on the whole image, and of the two baselines on the same objects. */
  dice: number;
  /** The same in box crops of BOX_CROP_CONTEXT box sides (shared/src/boxCrop.ts), what the model folder declares. */
  boxCropDice: number;
  boxDice: number;
  otsuDice: number;
}

const NO_OBJECTS = 'no objects to evaluate; give a folder of images/ + masks/ (e.g. fedsam synth --generator corpus --split heldout --seed 1 --images 24 --out DIR)';

/** Fail before a long run starts if `data` cannot be evaluated (missing, unreadable, no objects). */
export async function checkEvalData(data: string): Promise<void> {
  const { samples } = await loadDataset(data);
  if (!samples.length) throw new Error(`--eval ${data}: ${NO_OBJECTS}`);
}

/** Evaluate `modelDir` on every object of `data` (no split). Embeddings go to a temporary cache removed afterwards:
 * each checkpoint has new encoder weights, so nothing would be reused. */
export async function evaluateCheckpoint(modelDir: string, data: string, step: number): Promise<CheckpointEval> {
  const cacheDir = await mkdtemp(join(tmpdir(), 'fedsam-pretrain-eval-'));
  try {
    const loaded = await loadModel(modelDir);
    try {
      const site = await prepareSite({ model: loaded, data, noSplit: true, quiet: true, cacheDir, embedWorkers: 0, boxCrop: 'off' });
      if (!site.val.length) throw new Error(`--eval ${data}: ${NO_OBJECTS}`);
      const m = await evaluateItems(loaded, site.cache, site.val, { baselines: true });
      const cropped = await prepareSite({ model: loaded, data, noSplit: true, quiet: true, cacheDir, embedWorkers: 0, boxCrop: BOX_CROP_CONTEXT });
      const c = await evaluateItems(loaded, cropped.cache, cropped.val);
      return { step, n: m.n, dice: m.dice, boxCropDice: c.dice, boxDice: m.boxDice, otsuDice: m.otsuDice! };
    } finally {
      loaded.model.dispose();
    }
  } finally {
    await rm(cacheDir, { recursive: true, force: true });
  }
}
