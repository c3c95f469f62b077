// The built-in model's name and folder, without the model code: the server resolves `base_model: fedsam-tiny`
// through this before it decides to load anything.
import { fileURLToPath } from 'node:url';
import { SAM_FINETUNE_LR, TINY_MODEL_LR } from '../train/lr.ts';
import { RECIPE_BOX_JITTER, TINY_MODEL_BOX_JITTER, type BoxJitter } from '../train/boxJitter.ts';

/** The built-in model's name (what `--model` and `base_model` default to). */
export const DEFAULT_MODEL = 'fedsam-tiny';

/**
 * fedsam-tiny: SAM's architecture at toy size (256-pixel input, 8-pixel patches, 2 vision layers of width 64, a
 * 64-wide two-way transformer; 0.42 M parameters), pretrained by `fedsam pretrain` on the procedural corpus (the
 * recipe: `fedsam pretrain --help`). An HF SamModel folder in the repository, so it loads like any download.
 */
export const DEFAULT_MODEL_DIR = fileURLToPath(new URL('../../models/fedsam-tiny/', import.meta.url));

/** What fine-tuning uses when nothing is given: the built-in model's own settings, else the HF recipe's (SAM weights). */
export function fineTuneDefaults(builtin: boolean): { lr: number; boxJitter: BoxJitter } {
  return builtin ? { lr: TINY_MODEL_LR, boxJitter: TINY_MODEL_BOX_JITTER } : { lr: SAM_FINETUNE_LR, boxJitter: RECIPE_BOX_JITTER };
}

/** The folder a model name stands for: the built-in model's for its name, else the name itself. */
export const modelFolder = (spec: string): string => (spec === DEFAULT_MODEL ? DEFAULT_MODEL_DIR : spec);
