// Overlap metrics on binary masks (any non-zero value is foreground). Both empty -> 1 (perfect agreement).
import { filledBox } from './mask.ts';
import type { Sample } from './types.ts';

function check(pred: ArrayLike<number>, gt: ArrayLike<number>): void {
  if (pred.length !== gt.length) throw new RangeError(`mask sizes differ: ${pred.length} vs ${gt.length}`);
}

/** Returns [|pred ∩ gt|, |pred|, |gt|]. */
export function overlapCounts(pred: ArrayLike<number>, gt: ArrayLike<number>): [number, number, number] {
  check(pred, gt);
  let inter = 0, p = 0, g = 0;
  for (let i = 0; i < pred.length; i++) {
    const a = pred[i] !== 0, b = gt[i] !== 0;
    if (a) p++;
    if (b) g++;
    if (a && b) inter++;
  }
  return [inter, p, g];
}

export function dice(pred: ArrayLike<number>, gt: ArrayLike<number>): number {
  const [inter, p, g] = overlapCounts(pred, gt);
  return p + g === 0 ? 1 : (2 * inter) / (p + g);
}

export function iou(pred: ArrayLike<number>, gt: ArrayLike<number>): number {
  const [inter, p, g] = overlapCounts(pred, gt);
  const union = p + g - inter;
  return union === 0 ? 1 : inter / union;
}


/** Mean over samples of the Dice of the filled (tight) bounding box against the object mask. */
export async function boxBaselineDice(samples: readonly Sample[]): Promise<number> {
  if (samples.length === 0) return NaN;
  let sum = 0;
  for (const s of samples) sum += dice(filledBox(s.box, s.width, s.height), await s.loadMask());
  return sum / samples.length;
}
