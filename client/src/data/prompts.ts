// Prompts for fine-tuning: box prompts (jittered while training, exact for validation) and optional points.
import type { Rng } from './rng.ts';
import type { Box } from './types.ts';
import { samBoxNoise, type BoxJitter } from '@fedsam/shared/train/boxJitter';

/**
 * Box prompt from an object's tight box. With an rng: 'sam' draws SAM's training noise (boxJitter.ts); a number N
 * moves each side outwards by an integer in [0, N] px, clamped like the HF SAM fine-tuning recipe (get_bounding_box):
 *   x0 = max(0, x0 - j), y0 = max(0, y0 - j), x1 = min(W, x1 + j), y1 = min(H, y1 + j).
 * Without an rng (validation) the tight box is returned.
 */
export function boxPrompt(box: Box, width: number, height: number, rng: Rng | undefined, jitter: BoxJitter): Box {
  if (!rng || jitter === 0) return [box[0], box[1], box[2], box[3]];
  if (jitter === 'sam') return samBoxNoise(box, width, height, rng);
  return [
    Math.max(0, box[0] - rng.int(0, jitter)),
    Math.max(0, box[1] - rng.int(0, jitter)),
    Math.min(width, box[2] + rng.int(0, jitter)),
    Math.min(height, box[3] + rng.int(0, jitter)),
  ];
}

export interface PointPrompts {
  /** [x, y] integer pixel coordinates (column, row); SAM's prompt encoder adds the +0.5 pixel-centre shift. */
  points: [number, number][];
  /** 1 = foreground (inside the object), 0 = background. */
  labels: number[];
}

export interface PointOptions {
  positive?: number;
  negative?: number;
  /** Draw negatives inside this box when it has background pixels (harder, more useful negatives). */
  box?: Box;
}

function nth(mask: Uint8Array, want: number, k: number, width: number, inBox?: Box): number {
  for (let i = 0; i < mask.length; i++) {
    if ((mask[i] !== 0 ? 1 : 0) !== want) continue;
    if (inBox) {
      const x = i % width, y = (i - x) / width;
      if (x < inBox[0] || x > inBox[2] || y < inBox[1] || y > inBox[3]) continue;
    }
    if (k-- === 0) return i;
  }
  return -1;
}

function count(mask: Uint8Array, want: number, width: number, inBox?: Box): number {
  let n = 0;
  for (let i = 0; i < mask.length; i++) {
    if ((mask[i] !== 0 ? 1 : 0) !== want) continue;
    if (inBox) {
      const x = i % width, y = (i - x) / width;
      if (x < inBox[0] || x > inBox[2] || y < inBox[1] || y > inBox[3]) continue;
    }
    n++;
  }
  return n;
}

/** Sample point prompts uniformly inside (positive) and outside (negative) a 0/1 mask. */
export function samplePoints(mask: Uint8Array, width: number, height: number, rng: Rng, opts: PointOptions = {}): PointPrompts {
  if (mask.length !== width * height) throw new RangeError(`mask has ${mask.length} pixels, expected ${width}x${height}`);
  const out: PointPrompts = { points: [], labels: [] };
  const draw = (want: number, n: number, inBox?: Box): void => {
    const total = count(mask, want, width, inBox);
    if (total === 0) return;
    for (let k = 0; k < n; k++) {
      const i = nth(mask, want, rng.int(0, total - 1), width, inBox);
      out.points.push([i % width, Math.floor(i / width)]);
      out.labels.push(want);
    }
  };
  draw(1, opts.positive ?? 1);
  const neg = opts.negative ?? 0;
  if (neg > 0) {
    const box = opts.box && count(mask, 0, width, opts.box) > 0 ? opts.box : undefined;
    draw(0, neg, box);
  }
  return out;
}
