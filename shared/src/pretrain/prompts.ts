// Prompts drawn as in SAM's training (Kirillov et al. 2023, appendix A): a box jittered by ~10% of its side, or
// points inside (positive) / outside (negative) the object. A single point is ambiguous, so it is answered with the
// three multimask outputs (the loss takes the best); a box, or several points, with the single-mask output (token 0),
// which is what `fedsam train` fine-tunes with a box.
import type { Rng } from '../rng.ts';
import { samBoxNoise } from '../train/boxJitter.ts';

/** A prompt in the model-input frame (pixels of the resized image, HF's processor output). */
export interface TrainPrompt {
  /** x1, y1, x2, y2 */
  box?: [number, number, number, number];
  /** [x, y] per point, with labels 1 (inside) / 0 (outside). */
  points?: [number, number][];
  labels?: number[];
  /** Answer with the three multimask outputs (min loss) instead of token 0. */
  multimask: boolean;
  kind: 'box' | 'point' | 'box+points' | 'points';
}

/** Relative frequencies of the prompt kinds. */
export const PROMPT_MIX = { box: 0.5, point: 0.25, 'box+points': 0.15, points: 0.1 } as const;

interface MaskGeometry { x0: number; y0: number; x1: number; y1: number; inside: number[]; outsideInBox: number[] }

/** Bounding box (inclusive pixel corners) and pixel lists of a binary mask; undefined for an empty mask. */
export function maskGeometry(mask: Uint8Array, width: number, height: number): MaskGeometry | undefined {
  let x0 = width, y0 = height, x1 = -1, y1 = -1;
  const inside: number[] = [];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (!mask[y * width + x]) continue;
      inside.push(y * width + x);
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
  }
  if (x1 < 0) return undefined;
  const outsideInBox: number[] = [];
  for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) if (!mask[y * width + x]) outsideInBox.push(y * width + x);
  return { x0, y0, x1, y1, inside, outsideInBox };
}

/**
 * A prompt for one object (mask in the sample's frame; `scale` maps sample pixels to model-input pixels).
 * Deterministic for the rng's state.
 */
export function samplePrompt(g: MaskGeometry, width: number, height: number, scale: number, rng: Rng): TrainPrompt {
  const r = rng.next();
  const kind: TrainPrompt['kind'] = r < PROMPT_MIX.box ? 'box' : r < PROMPT_MIX.box + PROMPT_MIX.point ? 'point'
    : r < PROMPT_MIX.box + PROMPT_MIX.point + PROMPT_MIX['box+points'] ? 'box+points' : 'points';
  const pixel = (i: number): [number, number] => [((i % width) + rng.float(0.1, 0.9)) * scale, (Math.floor(i / width) + rng.float(0.1, 0.9)) * scale];
  const positive = (): [number, number] => pixel(g.inside[rng.int(0, g.inside.length - 1)]!);
  const negative = (): [number, number] | undefined => {
    if (g.outsideInBox.length) return pixel(g.outsideInBox[rng.int(0, g.outsideInBox.length - 1)]!);
    // a filled box: a pixel just outside it
    const x = Math.min(width - 1, Math.max(0, rng.bool() ? g.x0 - 2 : g.x1 + 2)), y = rng.int(g.y0, g.y1);
    return x >= g.x0 && x <= g.x1 ? undefined : [(x + 0.5) * scale, (y + 0.5) * scale];
  };
  const box = (): [number, number, number, number] => {
    const [x1, y1, x2, y2] = samBoxNoise([g.x0, g.y0, g.x1 + 1, g.y1 + 1], width, height, rng);
    return [x1 * scale, y1 * scale, x2 * scale, y2 * scale];
  };
  if (kind === 'box') return { box: box(), multimask: false, kind };
  if (kind === 'point') return { points: [positive()], labels: [1], multimask: true, kind };
  const points: [number, number][] = [positive()];
  const labels = [1];
  const extra = rng.int(1, 2);
  for (let k = 0; k < extra; k++) {
    const neg = rng.bool() ? negative() : undefined;
    if (neg) { points.push(neg); labels.push(0); } else { points.push(positive()); labels.push(1); }
  }
  return kind === 'box+points' ? { box: box(), points, labels, multimask: false, kind } : { points, labels, multimask: false, kind };
}
