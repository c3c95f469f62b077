// Box-crop scenes: a share of the samples is one object seen the way a model that crops (boxCrop.ts) sees it at
// inference: the square of BOX_CROP_CONTEXT × its box's longer side around its box, with its neighbours as context, and
// only that object as the target. The rest of a model's pretraining sees whole images, where most objects are small;
// in a crop every object fills about a quarter of the frame (README, "Box crops").
import { boxCropRect, cropImage, cropMask, BOX_CROP_CONTEXT } from '../boxCrop.ts';
import { maskGeometry } from './prompts.ts';
import type { SampleSource } from './sample.ts';

/** `source` with each sample, with probability `share`, replaced by a box crop around one of its objects. Pure. */
export function withBoxCrops(source: SampleSource, share: number, modelInput: number, context = BOX_CROP_CONTEXT): SampleSource {
  if (!(share >= 0 && share <= 1)) throw new RangeError(`box-crop share must be in [0, 1], got ${share}`);
  return (index, rng) => {
    const sample = source(index, rng);
    const pick = rng.fork('crop');
    if (!(pick.next() < share)) return sample;
    const objects = sample.masks.filter((m) => m.includes(1));
    if (!objects.length) return sample;
    const m = objects[pick.int(0, objects.length - 1)]!;
    const g = maskGeometry(m, sample.width, sample.height)!;
    const r = boxCropRect([g.x0, g.y0, g.x1, g.y1], sample.width, sample.height, modelInput, context);
    const image = cropImage({ data: sample.image, width: sample.width, height: sample.height }, r);
    return {
      image: image.data, width: r.width, height: r.height, masks: [cropMask(m, sample.width, r)],
      tags: [...(sample.tags ?? []), 'box-crop'],
    };
  };
}
