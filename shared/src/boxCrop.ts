// Box crops: segment each object in a square crop around its box, resized to the model's input, instead of in the
// whole image. A model whose embedding grid is coarse for its objects (fedsam-tiny: 32×32 cells over 256 px, so an
// object under 100 px covers a few cells) then sees the object at about half the crop's side (SAM's
// automatic mask generator segments zoomed image crops for small objects in the same spirit).
// Whether a model crops is a fact of the model folder (`fedsam_box_crop` in its preprocessor_config.json, kept when a
// fine-tuned copy is saved); a site's data becomes cropped samples in client/src/data/cropSample.ts.
import type { RGBImage } from './image.ts';

/** The crop's side is this many times the box's longer side (the object fills about half of it). */
export const BOX_CROP_CONTEXT = 2;
/** Never magnify by more than this: upsampling beyond it adds no detail (crop side ≥ model input / this). */
export const BOX_CROP_MAX_ZOOM = 4;

export const BOX_CROP_HELP = `crop each object to a square of N × its box's longer side around the box (at most ${BOX_CROP_MAX_ZOOM}× magnification), resized to the model input, instead of segmenting it in the whole image; off = whole image (default: the model folder's fedsam_box_crop, in its preprocessor_config.json: ${BOX_CROP_CONTEXT} for the built-in model, off for SAM weights; README, "Box crops")`;

/** A crop of this many box sides around each box, or 'off' (the whole image). */
export type BoxCrop = number | 'off';

/** How a model folder prepares its inputs: `fedsam_box_crop` in its preprocessor_config.json, else the whole image. */
export const modelBoxCrop = (processorConfig: { fedsam_box_crop?: number }): BoxCrop => processorConfig.fedsam_box_crop ?? 'off';

/** The crop factor, or undefined for 'off' / not given. */
export const boxCropFactor = (c: BoxCrop | undefined): number | undefined => (typeof c === 'number' ? c : undefined);

export interface CropRect { x: number; y: number; width: number; height: number }

/** Parse `--box-crop`: 'off' or a context factor ≥ 1. */
export function parseBoxCrop(s: string, flag = '--box-crop'): BoxCrop {
  if (s === 'off') return 'off';
  const v = Number(s);
  if (!(s.trim() !== '' && Number.isFinite(v) && v >= 1 && v <= 16)) {
    throw new RangeError(`${flag} must be 'off' or a number from 1 to 16 (the crop's side in box sides, e.g. ${BOX_CROP_CONTEXT}), got '${s}'`);
  }
  return v;
}

/**
 * The square crop (clipped to the image) centred on `box` ([x0, y0, x1, y1], inclusive pixel bounds) with side
 * context × the box's longer side, at least modelInput / BOX_CROP_MAX_ZOOM, at most the image's longer side.
 * Shifted, not shrunk, at the image's edges, so it always holds the whole box.
 */
export function boxCropRect(box: readonly number[], width: number, height: number, modelInput: number, context = BOX_CROP_CONTEXT): CropRect {
  const [x0, y0, x1, y1] = box as [number, number, number, number];
  const long = Math.max(x1 - x0 + 1, y1 - y0 + 1);
  const side = Math.min(Math.max(width, height), Math.max(Math.ceil(modelInput / BOX_CROP_MAX_ZOOM), Math.round(context * long)));
  const w = Math.min(side, width), h = Math.min(side, height);
  const place = (lo: number, hi: number, size: number, limit: number) =>
    Math.max(0, Math.min(limit - size, Math.min(lo, Math.max(hi + 1 - size, Math.round((lo + hi + 1) / 2 - size / 2)))));
  return { x: place(x0, x1, w, width), y: place(y0, y1, h, height), width: w, height: h };
}

export function cropImage(img: RGBImage, r: CropRect): RGBImage {
  const data = new Uint8Array(r.width * r.height * 3);
  for (let y = 0; y < r.height; y++) {
    const from = ((r.y + y) * img.width + r.x) * 3;
    data.set(img.data.subarray(from, from + r.width * 3), y * r.width * 3);
  }
  return { ...img, data, width: r.width, height: r.height };
}

export function cropMask(mask: Uint8Array, width: number, r: CropRect): Uint8Array {
  const out = new Uint8Array(r.width * r.height);
  for (let y = 0; y < r.height; y++) out.set(mask.subarray((r.y + y) * width + r.x, (r.y + y) * width + r.x + r.width), y * r.width);
  return out;
}

/** Paste a crop-sized mask (or logits) back into an image-sized one, `outside` elsewhere. */
export function uncropMask<T extends Uint8Array | Float32Array>(mask: T, r: CropRect, width: number, height: number, outside = 0): T {
  const out = new (mask.constructor as new (n: number) => T)(width * height);
  if (outside) out.fill(outside);
  for (let y = 0; y < r.height; y++) out.set(mask.subarray(y * r.width, (y + 1) * r.width), (r.y + y) * width + r.x);
  return out;
}
