// A site's object seen through its box crop (shared/src/boxCrop.ts): an ordinary Sample with its own image key, box
// and mask in the crop's frame, so embedding, caching, training and evaluation need no other change. The ground truth
// outside the crop is empty (the crop holds the whole box), so Dice on the crop is Dice on the image with nothing
// predicted outside the crop.
import { boxCropRect, cropImage, cropMask, uncropMask, BOX_CROP_CONTEXT, type CropRect } from '@fedsam/shared/boxCrop';
import type { Box, Sample } from './types.ts';

const holds = (r: CropRect, b: Box) => r.x <= b[0] && r.y <= b[1] && r.x + r.width > b[2] && r.y + r.height > b[3];
const shift = (b: Box, r: CropRect): Box => [b[0] - r.x, b[1] - r.y, b[2] - r.x, b[3] - r.y];

/**
 * The sample seen through its box crop: same id, group and label; its own image key, size, box and mask. With a
 * `promptBox` (a loose box, as a user draws it) the crop is placed around that box, as it would be at inference, and
 * the box travels along as the sample's prompt; only if that crop missed part of the object (an inward box at the
 * image's edge) is it widened to hold both, so that Dice stays exact.
 */
export function cropSample(s: Sample, modelInput: number, context = BOX_CROP_CONTEXT, promptBox?: Box): Sample {
  let r = boxCropRect(promptBox ?? s.box, s.width, s.height, modelInput, context);
  if (promptBox && !holds(r, s.box)) {
    const both: Box = [Math.min(promptBox[0], s.box[0]), Math.min(promptBox[1], s.box[1]), Math.max(promptBox[2], s.box[2]), Math.max(promptBox[3], s.box[3])];
    r = boxCropRect(both, s.width, s.height, modelInput, context);
  }
  return {
    ...s,
    imageKey: `${s.imageKey}#crop=${r.x},${r.y},${r.width},${r.height}`,
    box: shift(s.box, r), width: r.width, height: r.height,
    ...(promptBox ? { promptBox: shift(promptBox, r) } : {}),
    cropOf: { sample: s, x: r.x, y: r.y },
    loadImage: async () => cropImage(await s.loadImage(), r),
    loadMask: async () => cropMask(await s.loadMask(), s.width, r),
  };
}

/** A prediction on a sample, seen in the whole image when the sample is a box crop (for pictures: overlays). */
export function inWholeImage(s: Sample, pred: Uint8Array, box: Box): { sample: Sample; pred: Uint8Array; box: Box } {
  const c = s.cropOf;
  if (!c) return { sample: s, pred, box };
  return {
    sample: c.sample,
    pred: uncropMask(pred, { x: c.x, y: c.y, width: s.width, height: s.height }, c.sample.width, c.sample.height),
    box: [box[0] + c.x, box[1] + c.y, box[2] + c.x, box[3] + c.y],
  };
}
