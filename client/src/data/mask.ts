// Mask helpers: per-label statistics, binary extraction, bounding boxes, filled boxes.
import type { Box } from './types.ts';

export interface ObjectStats {
  label: number;
  box: Box;
  area: number;
}

/** Bounding box and area of every non-zero label of a label image (w*h, row-major), sorted by label. */
export function labelStats(labels: ArrayLike<number>, width: number, height: number): ObjectStats[] {
  if (labels.length !== width * height) throw new RangeError(`label image has ${labels.length} values, expected ${width}x${height}`);
  const m = new Map<number, ObjectStats>();
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0; x < width; x++, i++) {
      const l = labels[i]!;
      if (l === 0) continue;
      let s = m.get(l);
      if (!s) {
        s = { label: l, box: [x, y, x, y], area: 0 };
        m.set(l, s);
      }
      const b = s.box;
      if (x < b[0]) b[0] = x;
      if (x > b[2]) b[2] = x;
      if (y > b[3]) b[3] = y; // rows are visited in order, so b[1] is already the min row
      s.area++;
    }
  }
  return [...m.values()].sort((a, b) => a.label - b.label);
}

/** 0/1 mask of pixels equal to `label` (or of all non-zero pixels when label is undefined). */
export function binaryMask(labels: ArrayLike<number>, label?: number): Uint8Array {
  const out = new Uint8Array(labels.length);
  if (label === undefined) for (let i = 0; i < labels.length; i++) out[i] = labels[i] !== 0 ? 1 : 0;
  else for (let i = 0; i < labels.length; i++) out[i] = labels[i] === label ? 1 : 0;
  return out;
}

/** Tight box of the non-zero pixels, or null for an empty mask. */
export function maskBox(mask: ArrayLike<number>, width: number, height: number): Box | null {
  const s = labelStats(binaryMask(mask), width, height);
  return s.length ? s[0]!.box : null;
}

/** 0/1 mask of the filled box (inclusive of x1/y1, clipped to the image). */
export function filledBox(box: Box, width: number, height: number): Uint8Array {
  const out = new Uint8Array(width * height);
  const x0 = Math.max(0, Math.floor(box[0])), y0 = Math.max(0, Math.floor(box[1]));
  const x1 = Math.min(width - 1, Math.ceil(box[2])), y1 = Math.min(height - 1, Math.ceil(box[3]));
  for (let y = y0; y <= y1; y++) out.fill(1, y * width + x0, y * width + x1 + 1);
  return out;
}
