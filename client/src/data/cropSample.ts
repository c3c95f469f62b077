// A site's object seen through its box crop (shared/src/boxCrop.ts): an ordinary Sample with its own image key, box
// and mask in the crop's frame, so embedding, caching, training and evaluation need no other change. The ground truth
// outside the crop is empty (the crop holds the whole box), so Dice on the crop is Dice on the image with nothing
// predicted outside the crop.
import { boxCropRect, cropImage, cropMask, BOX_CROP_CONTEXT } from '@fedsam/shared/boxCrop';
import type { Box, Sample } from './types.ts';

/** The sample seen through its box crop: same id, group and label; its own image key, size, box and mask. */
export function cropSample(s: Sample, modelInput: number, context = BOX_CROP_CONTEXT): Sample {
  const r = boxCropRect(s.box, s.width, s.height, modelInput, context);
  const box: Box = [s.box[0] - r.x, s.box[1] - r.y, s.box[2] - r.x, s.box[3] - r.y];
  return {
    ...s,
    imageKey: `${s.imageKey}#crop=${r.x},${r.y},${r.width},${r.height}`,
    box, width: r.width, height: r.height,
    loadImage: async () => cropImage(await s.loadImage(), r),
    loadMask: async () => cropMask(await s.loadMask(), s.width, r),
  };
}
