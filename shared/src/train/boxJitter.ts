// How local training jitters its box prompts, one place for every command, the server config and the site daemon.
// Validation always prompts with the tight box, so the training noise decides how far training's prompts sit from the
// prompts the model is judged on (README, Results: "Box prompts in training").
import type { Rng } from '../rng.ts';

/**
 * 'sam': SAM's own training noise (Kirillov et al. 2023, appendix A): each coordinate moves by N(0, 10% of the box's
 * side), at most 20 px per 1024 px of the image's longest side, inwards or outwards.
 * A number N: the HF fine-tuning recipe's get_bounding_box, every side moves outwards by an integer in [0, N] px.
 */
export type BoxJitter = 'sam' | number;

/** The HF recipe's. */
export const RECIPE_BOX_JITTER = 20;
/** The built-in fedsam-tiny's own: the noise it was pretrained with (shared/src/pretrain/prompts.ts). */
export const TINY_MODEL_BOX_JITTER: BoxJitter = 'sam';

/** Parse a CLI or config value: 'sam' or a whole number of pixels ≥ 0. */
export function parseBoxJitter(value: string | number): BoxJitter {
  if (value === 'sam') return 'sam';
  const n = typeof value === 'number' ? value : /^\d+$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`box jitter must be 'sam' or a whole number of pixels >= 0, got ${JSON.stringify(value)}`);
  return n;
}

/** How logs and `simulate` describe it. */
export function describeBoxJitter(j: BoxJitter): string {
  return j === 'sam' ? "SAM's box noise (10% of the side, at most 20 px per 1024)" : j === 0 ? 'tight boxes' : `boxes enlarged by 0-${j} px per side (HF recipe)`;
}

/** FitConfig.box_jitter on the wire: 'sam' or the pixels as a decimal string; '' (older servers) = the recipe's. */
export function boxJitterToWire(j: BoxJitter): string {
  return String(j);
}

export function boxJitterFromWire(s: string | undefined): BoxJitter {
  return s ? parseBoxJitter(s) : RECIPE_BOX_JITTER;
}

/**
 * SAM's noise on a box [x0, y0, x1, y1] in an image of width × height (the side taken as x1 − x0, y1 − y0, in the
 * caller's convention), clamped to the image and kept at least 1 px wide. Draws four normals: x0, y0, x1, y1.
 */
export function samBoxNoise(box: readonly [number, number, number, number], width: number, height: number, rng: Rng): [number, number, number, number] {
  const cap = (20 * Math.max(width, height)) / 1024;
  const w = box[2] - box[0], h = box[3] - box[1];
  const j = (side: number) => Math.max(-cap, Math.min(cap, rng.normal(0, 0.1 * side)));
  const x0 = Math.max(0, box[0] + j(w)), y0 = Math.max(0, box[1] + j(h));
  const x1 = Math.min(width, box[2] + j(w)), y1 = Math.min(height, box[3] + j(h));
  return [x0, y0, Math.max(x0 + 1, x1), Math.max(y0 + 1, y1)];
}

/** The option's help text, the same for `fedsam train`, `server` and `simulate`. */
export const BOX_JITTER_HELP = `box-prompt noise while training: 'sam' = SAM's own (each side ± N(0, 10% of the side), at most 20 px per 1024 px), or N = the HF recipe's (each side moves outwards by 0-N px); default: ${TINY_MODEL_BOX_JITTER} for the built-in model, ${RECIPE_BOX_JITTER} for downloaded SAM weights`;
