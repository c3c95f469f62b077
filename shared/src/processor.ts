// SamProcessor: HuggingFace `SamImageProcessor` + `SamProcessor` (slow path) in TypeScript.
//
//  1. decode -> RGB uint8 HWC (image.ts, like PIL convert('RGB'))
//  2. resize longest side to size.longest_edge: new = (int(H*s+0.5), int(W*s+0.5)), s = longest/max(H,W),
//     with Pillow's BILINEAR ImagingResample reproduced bit-exactly (resample/pillowBilinear.ts)
//  3. rescale: float64(u8) * rescale_factor -> float32 (numpy semantics)
//  4. normalize in float32: (x - mean) / std
//  5. pad bottom/right with 0 to pad_size, HWC -> NCHW [1,3,padH,padW]
//  prompts: x *= new_w/old_w, y *= new_h/old_h (float64, no +0.5); unequal point counts padded with -10 / label -10
//  masks:   bilinear (PyTorch align_corners=False, no antialias: resample/torchBilinear.ts) to pad size -> crop [:h,:w] -> bilinear to (H,W)
//           -> optional > threshold; float32 arithmetic like torch.
import * as tf from '@tensorflow/tfjs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { readImageRGB, type DecodeInfo, type ReadImageOptions, type RGBImage } from './image.ts';
import { resizeBilinearPillow } from './resample/pillowBilinear.ts';
import { resizeBilinearTorch } from './resample/torchBilinear.ts';

// ---------------------------------------------------------------------------------------------------------------
// config

const SizeHW = z.object({ height: z.number().int().positive(), width: z.number().int().positive() });

/** preprocessor_config.json (HF SamImageProcessor). Unknown keys are kept. */
export const SamPreprocessorConfigSchema = z
  .object({
    do_resize: z.boolean().default(true),
    size: z.object({ longest_edge: z.number().int().positive().default(1024) }).passthrough().default({ longest_edge: 1024 }),
    resample: z.number().int().default(2),
    do_rescale: z.boolean().default(true),
    rescale_factor: z.number().positive().default(1 / 255),
    do_normalize: z.boolean().default(true),
    image_mean: z.array(z.number()).length(3).default([0.485, 0.456, 0.406]),
    image_std: z.array(z.number().positive()).length(3).default([0.229, 0.224, 0.225]),
    do_pad: z.boolean().default(true),
    pad_size: SizeHW.default({ height: 1024, width: 1024 }),
    do_convert_rgb: z.boolean().default(true),
    /** FedSAM's, not HF's (which ignores it): segment each object in a crop of this many box sides (boxCrop.ts). */
    fedsam_box_crop: z.number().min(1).max(16).optional(),
  })
  .passthrough();
export type SamPreprocessorConfig = z.output<typeof SamPreprocessorConfigSchema>;

export function parsePreprocessorConfig(json: unknown, source = 'preprocessor_config.json'): SamPreprocessorConfig {
  const r = SamPreprocessorConfigSchema.safeParse(json ?? {});
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new Error(`${source}: invalid SAM preprocessor config: ${issues}`);
  }
  if (r.data.do_resize && r.data.resample !== 2) {
    throw new Error(`${source}: resample=${r.data.resample} is not supported (only 2 = PIL BILINEAR, SAM's value)`);
  }
  return r.data;
}

export function defaultPreprocessorConfig(): SamPreprocessorConfig {
  return parsePreprocessorConfig({});
}

/** Load `<folder>/preprocessor_config.json` if present, else HF defaults. `source` says which. */
export async function loadPreprocessorConfig(folder?: string): Promise<{ config: SamPreprocessorConfig; source: string }> {
  if (!folder) return { config: defaultPreprocessorConfig(), source: 'defaults' };
  const file = join(folder, 'preprocessor_config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { config: defaultPreprocessorConfig(), source: 'defaults' };
    throw new Error(`${file}: cannot read (${(e as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  return { config: parsePreprocessorConfig(json, file), source: file };
}

// ---------------------------------------------------------------------------------------------------------------
// sizes

export type SizeHW = [height: number, width: number];

/** HF `_get_preprocess_shape`: scale = longest/max(H,W); (int(H*scale+0.5), int(W*scale+0.5)). */
export function getPreprocessShape(originalSize: SizeHW, longestEdge = 1024): SizeHW {
  const [h, w] = originalSize;
  const scale = (longestEdge * 1.0) / Math.max(h, w);
  // (HF would produce 0 for extremely thin images and fail; we keep at least one pixel)
  return [Math.max(1, Math.trunc(h * scale + 0.5)), Math.max(1, Math.trunc(w * scale + 0.5))];
}

/** Resize an RGB image like SamImageProcessor.resize (longest side -> longestEdge, PIL BILINEAR). */
export function resizeLongestSide(image: RGBImage, longestEdge = 1024): RGBImage {
  const [h, w] = getPreprocessShape([image.height, image.width], longestEdge);
  return { data: resizeBilinearPillow(image.data, image.width, image.height, 3, w, h), width: w, height: h };
}

// ---------------------------------------------------------------------------------------------------------------
// rescale + normalize + pad

/** Per-channel 256-entry table u8 -> float32 output (numpy: float64 rescale -> float32, then float32 normalize). */
function normalizationTable(cfg: SamPreprocessorConfig): Float32Array[] {
  const tables: Float32Array[] = [];
  for (let c = 0; c < 3; c++) {
    const t = new Float32Array(256);
    const mean = Math.fround(cfg.image_mean[c]!);
    const std = Math.fround(cfg.image_std[c]!);
    for (let v = 0; v < 256; v++) {
      let x = cfg.do_rescale ? Math.fround(v * cfg.rescale_factor) : v;
      if (cfg.do_normalize) x = Math.fround(Math.fround(x - mean) / std);
      t[v] = x;
    }
    tables.push(t);
  }
  return tables;
}

/**
 * Resized RGB uint8 -> pixel values [3, padH, padW] (CHW, float32), valid region top-left, zeros elsewhere.
 * Without padding (do_pad false) the output is [3, h, w].
 */
export function pixelValuesFromResized(resized: RGBImage, cfg: SamPreprocessorConfig = defaultPreprocessorConfig()): { data: Float32Array; shape: [1, 3, number, number] } {
  const { width: w, height: h, data } = resized;
  const padH = cfg.do_pad ? cfg.pad_size.height : h;
  const padW = cfg.do_pad ? cfg.pad_size.width : w;
  if (h > padH || w > padW) throw new Error(`image ${w}x${h} is larger than pad_size ${padW}x${padH}`);
  const out = new Float32Array(3 * padH * padW);
  const tables = normalizationTable(cfg);
  const plane = padH * padW;
  for (let c = 0; c < 3; c++) {
    const t = tables[c]!;
    const base = c * plane;
    for (let y = 0; y < h; y++) {
      const o = base + y * padW;
      let p = y * w * 3 + c;
      for (let x = 0; x < w; x++, p += 3) out[o + x] = t[data[p]!]!;
    }
  }
  return { data: out, shape: [1, 3, padH, padW] };
}

export interface SamPreprocessed {
  /** float32 NCHW [1, 3, padH, padW] (HF pixel_values). */
  pixelValues: Float32Array;
  shape: [1, 3, number, number];
  /** HF original_sizes[0]: (H, W) of the decoded image. */
  originalSize: SizeHW;
  /** HF reshaped_input_sizes[0]: (h, w) after resize, before padding. */
  reshapedInputSize: SizeHW;
  /** Decoded image (RGB uint8 HWC), kept for overlays. */
  image: RGBImage;
  /** Resized image before normalisation. */
  resized: RGBImage;
  decodeInfo?: DecodeInfo;
}

/** SamImageProcessor on an already decoded RGB image. */
export function preprocessRGB(image: RGBImage, cfg: SamPreprocessorConfig = defaultPreprocessorConfig()): SamPreprocessed {
  if (image.data.length !== image.width * image.height * 3) throw new Error(`RGB image data has ${image.data.length} bytes, expected ${image.width}x${image.height}x3`);
  const originalSize: SizeHW = [image.height, image.width];
  const resized = cfg.do_resize ? resizeLongestSide(image, cfg.size.longest_edge) : image;
  const { data, shape } = pixelValuesFromResized(resized, cfg);
  return { pixelValues: data, shape, originalSize, reshapedInputSize: [resized.height, resized.width], image, resized };
}

/** pixel_values as a tf.Tensor4D NCHW [B, 3, H, W] (HF layout). Caller disposes. */
export function pixelValuesTensor(pre: SamPreprocessed | SamPreprocessed[]): tf.Tensor4D {
  const list = Array.isArray(pre) ? pre : [pre];
  if (list.length === 0) throw new Error('pixelValuesTensor: empty batch');
  const [, c, h, w] = list[0]!.shape;
  if (list.length === 1) return tf.tensor4d(list[0]!.pixelValues, [1, c, h, w]);
  const all = new Float32Array(list.length * c * h * w);
  list.forEach((p, i) => {
    if (p.shape[2] !== h || p.shape[3] !== w) throw new Error('pixelValuesTensor: images have different padded sizes');
    all.set(p.pixelValues, i * c * h * w);
  });
  return tf.tensor4d(all, [list.length, c, h, w]);
}

// ---------------------------------------------------------------------------------------------------------------
// prompts

/** x *= new_w/old_w, y *= new_h/old_h (float64; HF SamProcessor._normalize_coordinates). points: [[x, y], ...]. */
export function rescalePoints(points: ReadonlyArray<ReadonlyArray<number>>, originalSize: SizeHW, reshapedSize: SizeHW): number[][] {
  const sx = reshapedSize[1] / originalSize[1];
  const sy = reshapedSize[0] / originalSize[0];
  return points.map((p) => {
    if (p.length !== 2) throw new Error(`a point must be [x, y], got [${p.join(', ')}]`);
    return [p[0]! * sx, p[1]! * sy];
  });
}

/**
 * Boxes [[x1, y1, x2, y2], ...] rescaled like HF: coordinates are first cast to float32 (HF does
 * `np.array(box).astype(np.float32)`), then x *= new_w/old_w, y *= new_h/old_h in float64.
 */
export function rescaleBoxes(boxes: ReadonlyArray<ReadonlyArray<number>>, originalSize: SizeHW, reshapedSize: SizeHW): number[][] {
  const sx = reshapedSize[1] / originalSize[1];
  const sy = reshapedSize[0] / originalSize[0];
  return boxes.map((b) => {
    if (b.length !== 4) throw new Error(`a box must be [x1, y1, x2, y2], got [${b.join(', ')}]`);
    return [Math.fround(b[0]!) * sx, Math.fround(b[1]!) * sy, Math.fround(b[2]!) * sx, Math.fround(b[3]!) * sy];
  });
}

export const POINT_PAD_VALUE = -10;

/** One image's prompts in original-image pixel coordinates. */
export interface ImagePrompts {
  /** Points [N][2] (one point batch) or [pb][N][2]. */
  points?: number[][] | number[][][];
  /** Labels [N] or [pb][N]: 1 positive, 0 negative (-1 'not a point'). */
  labels?: number[] | number[][];
  /** Boxes [nb][4] (x1, y1, x2, y2). */
  boxes?: number[][];
}

export interface HostArray<T extends Float32Array | Int32Array> {
  data: T;
  shape: number[];
}

export interface SamPromptArrays {
  /** [B, pb, N, 2] float32 (values computed in float64) */
  input_points?: HostArray<Float32Array>;
  /** [B, pb, N] int32 */
  input_labels?: HostArray<Int32Array>;
  /** [B, nb, 4] float32 */
  input_boxes?: HostArray<Float32Array>;
  /** The same values in float64 (nested arrays), for exact checks. */
  values: { input_points?: number[][][][]; input_labels?: number[][][]; input_boxes?: number[][][] };
}

function isNested3(p: number[][] | number[][][]): p is number[][][] {
  return p.length > 0 && Array.isArray(p[0]) && Array.isArray((p[0] as unknown[])[0]);
}

/**
 * SamProcessor prompt handling for a batch of images: rescale to the resized frame, lay out as HF tensors
 * (input_points [B,pb,N,2], input_labels [B,pb,N], input_boxes [B,nb,4]) and pad images with fewer points with
 * coordinate -10 / label -10 (after rescaling, like HF). HF pads only along N and appends a single label; here
 * every missing point gets a label -10, so the shapes always agree.
 */
export function preparePrompts(prompts: ImagePrompts[], originalSizes: SizeHW[], reshapedSizes: SizeHW[]): SamPromptArrays {
  const B = prompts.length;
  if (originalSizes.length !== B && originalSizes.length !== 1) throw new Error(`prompts for ${B} images but ${originalSizes.length} original sizes`);
  const sizeOf = (i: number): [SizeHW, SizeHW] => [originalSizes[originalSizes.length === 1 ? 0 : i]!, reshapedSizes[reshapedSizes.length === 1 ? 0 : i]!];
  const out: SamPromptArrays = { values: {} };

  const hasPoints = prompts.some((p) => p.points && p.points.length);
  if (hasPoints) {
    if (!prompts.every((p) => p.points && p.points.length)) throw new Error('either every image has points or none has');
    const pts: number[][][][] = [];
    const lbs: number[][][] = [];
    for (let i = 0; i < B; i++) {
      const p = prompts[i]!;
      const [o, r] = sizeOf(i);
      const groups = isNested3(p.points!) ? p.points : [p.points as number[][]];
      const labels = p.labels === undefined ? undefined : Array.isArray(p.labels[0]) ? (p.labels as number[][]) : [p.labels as number[]];
      if (labels && labels.length !== groups.length) throw new Error(`image ${i}: ${groups.length} point batches but ${labels.length} label lists`);
      pts.push(groups.map((g) => rescalePoints(g, o, r)));
      lbs.push(groups.map((g, j) => {
        const l = labels ? labels[j]! : g.map(() => 1);
        if (l.length !== g.length) throw new Error(`image ${i}: ${g.length} points but ${l.length} labels`);
        return [...l];
      }));
    }
    const pb = pts[0]!.length;
    if (!pts.every((g) => g.length === pb)) throw new Error('every image must have the same number of point batches');
    const N = Math.max(...pts.flatMap((g) => g.map((q) => q.length)));
    for (let i = 0; i < B; i++) {
      for (let j = 0; j < pb; j++) {
        while (pts[i]![j]!.length < N) {
          pts[i]![j]!.push([POINT_PAD_VALUE, POINT_PAD_VALUE]);
          lbs[i]![j]!.push(POINT_PAD_VALUE);
        }
      }
    }
    out.input_points = { data: Float32Array.from(pts.flat(3)), shape: [B, pb, N, 2] };
    out.input_labels = { data: Int32Array.from(lbs.flat(2)), shape: [B, pb, N] };
    out.values.input_points = pts;
    out.values.input_labels = lbs;
  } else if (prompts.some((p) => p.labels && p.labels.length)) {
    throw new Error('labels given without points');
  }

  const hasBoxes = prompts.some((p) => p.boxes && p.boxes.length);
  if (hasBoxes) {
    if (!prompts.every((p) => p.boxes && p.boxes.length)) throw new Error('either every image has boxes or none has');
    const bxs = prompts.map((p, i) => rescaleBoxes(p.boxes!, ...sizeOf(i)));
    const nb = bxs[0]!.length;
    if (!bxs.every((b) => b.length === nb)) throw new Error('every image must have the same number of boxes (HF does not pad boxes)');
    out.input_boxes = { data: Float32Array.from(bxs.flat(2)), shape: [B, nb, 4] };
    out.values.input_boxes = bxs;
  }
  return out;
}

/** tf tensors for SamModel.forward (input_points float32, input_labels int32, input_boxes float32). Caller disposes. */
export function promptTensors(p: SamPromptArrays): { input_points?: tf.Tensor4D; input_labels?: tf.Tensor3D; input_boxes?: tf.Tensor3D } {
  const r: { input_points?: tf.Tensor4D; input_labels?: tf.Tensor3D; input_boxes?: tf.Tensor3D } = {};
  if (p.input_points) r.input_points = tf.tensor4d(p.input_points.data, p.input_points.shape as [number, number, number, number]);
  if (p.input_labels) r.input_labels = tf.tensor3d(p.input_labels.data, p.input_labels.shape as [number, number, number], 'int32');
  if (p.input_boxes) r.input_boxes = tf.tensor3d(p.input_boxes.data, p.input_boxes.shape as [number, number, number]);
  return r;
}

// ---------------------------------------------------------------------------------------------------------------
// post_process_masks

export interface PostProcessOptions {
  /** Threshold the result at `threshold` (HF default true). */
  binarize?: boolean;
  /** HF mask_threshold, default 0.0. */
  threshold?: number;
  /** Intermediate size (HF pad_size), default 1024 (number = square). */
  padSize?: number | { height: number; width: number };
  /**
   * 'js' (default): typed-array implementation with torch's float32 arithmetic.
   * 'tf': tf.image.resizeBilinear(halfPixelCenters=true) on the current backend, one mask at a time.
   */
  impl?: 'js' | 'tf';
}

/** One image's masks at original resolution: [pb, k, H, W], uint8 0/1 if binarized else float32 logits. */
export interface PostProcessedMasks {
  shape: [number, number, number, number];
  data: Uint8Array | Float32Array;
}

/**
 * Upscale one low-resolution mask [h0, w0] to the original image size: bilinear to padSize, crop [:h,:w],
 * bilinear to (H, W). Only the cropped part of the padSize intermediate is computed.
 */
export function postProcessMask(
  lowRes: Float32Array,
  lowResShape: [number, number],
  originalSize: SizeHW,
  reshapedSize: SizeHW,
  padSize: { height: number; width: number } = { height: 1024, width: 1024 },
  srcOffset = 0,
): Float32Array {
  const [lh, lw] = lowResShape;
  const [h, w] = reshapedSize;
  const [H, W] = originalSize;
  const up = resizeBilinearTorch(lowRes, lh, lw, padSize.height, padSize.width, { srcOffset, outRows: h, outCols: w });
  return resizeBilinearTorch(up, h, w, H, W);
}

function padSizeOf(p: PostProcessOptions['padSize']): { height: number; width: number } {
  if (p === undefined) return { height: 1024, width: 1024 };
  return typeof p === 'number' ? { height: p, width: p } : p;
}

/**
 * HF SamImageProcessor.post_process_masks. `lowRes`: pred_masks [B, pb, k, h0, w0] (tf tensor, or a Float32Array
 * with `shape`). originalSizes / reshapedSizes: one (H, W) per image (or a single pair for all).
 * Returns one entry per image. Masks are processed one at a time (peak extra memory: one intermediate).
 */
export async function postProcessMasks(
  lowRes: tf.Tensor | { data: Float32Array; shape: number[] },
  originalSizes: SizeHW | SizeHW[],
  reshapedSizes: SizeHW | SizeHW[],
  opts: PostProcessOptions = {},
): Promise<PostProcessedMasks[]> {
  let shape = lowRes instanceof tf.Tensor ? lowRes.shape : lowRes.shape;
  if (shape.length === 4) shape = [1, ...shape]; // [pb, k, h, w] for a single image
  if (shape.length !== 5) throw new Error(`postProcessMasks: expected low-res masks [B, pb, k, h, w], got [${shape.join(', ')}]`);
  const [B, pb, k, lh, lw] = shape as [number, number, number, number, number];
  const origs = (typeof originalSizes[0] === 'number' ? [originalSizes] : originalSizes) as SizeHW[];
  const reshs = (typeof reshapedSizes[0] === 'number' ? [reshapedSizes] : reshapedSizes) as SizeHW[];
  const binarize = opts.binarize ?? true;
  const threshold = opts.threshold ?? 0;
  const pad = padSizeOf(opts.padSize);
  const impl = opts.impl ?? 'js';
  const lowData = impl === 'js' ? (lowRes instanceof tf.Tensor ? ((await lowRes.data()) as Float32Array) : lowRes.data) : undefined;
  const lowTensor = impl === 'tf' ? (lowRes instanceof tf.Tensor ? lowRes : tf.tensor(lowRes.data, lowRes.shape)) : undefined;
  const results: PostProcessedMasks[] = [];
  try {
    for (let b = 0; b < B; b++) {
      const orig = origs[origs.length === 1 ? 0 : b];
      const resh = reshs[reshs.length === 1 ? 0 : b];
      if (!orig || !resh) throw new Error(`postProcessMasks: no original/reshaped size for image ${b}`);
      const [H, W] = orig;
      const [h, w] = resh;
      if (h > pad.height || w > pad.width) throw new Error(`postProcessMasks: reshaped size ${h}x${w} exceeds pad size ${pad.height}x${pad.width}`);
      const plane = H * W;
      const out = binarize ? new Uint8Array(pb * k * plane) : new Float32Array(pb * k * plane);
      for (let m = 0; m < pb * k; m++) {
        let full: Float32Array;
        if (lowData) {
          full = postProcessMask(lowData, [lh, lw], orig, resh, pad, (b * pb * k + m) * lh * lw);
        } else {
          // (tidy must return the tensor: returning the typed array makes tidy walk every element)
          const res = tf.tidy(() => {
            const x = tf.slice(lowTensor!.reshape([B * pb * k, lh, lw, 1]), [b * pb * k + m, 0, 0, 0], [1, lh, lw, 1]) as tf.Tensor4D;
            const up = tf.image.resizeBilinear(x, [pad.height, pad.width], false, true);
            const crop = tf.slice(up, [0, 0, 0, 0], [1, h, w, 1]);
            return tf.image.resizeBilinear(crop as tf.Tensor4D, [H, W], false, true);
          });
          try {
            full = (await res.data()) as Float32Array;
          } finally {
            res.dispose();
          }
        }
        const o = m * plane;
        if (binarize) {
          const bin = out as Uint8Array;
          for (let i = 0; i < plane; i++) bin[o + i] = full[i]! > threshold ? 1 : 0;
        } else {
          (out as Float32Array).set(full, o);
        }
      }
      results.push({ shape: [pb, k, H, W], data: out });
    }
  } finally {
    if (lowTensor && lowTensor !== lowRes) lowTensor.dispose();
  }
  return results;
}

// ---------------------------------------------------------------------------------------------------------------
// SamProcessor

export interface PreprocessOptions extends ReadImageOptions {}

export class SamProcessor {
  readonly config: SamPreprocessorConfig;
  /** Where the config came from: a file path or 'defaults'. */
  readonly configSource: string;

  constructor(config: SamPreprocessorConfig | Record<string, unknown> = {}, configSource = 'defaults') {
    this.config = parsePreprocessorConfig(config, configSource);
    this.configSource = configSource;
  }

  /** Load `<folder>/preprocessor_config.json` when present, else HF defaults. */
  static async fromFolder(folder?: string): Promise<SamProcessor> {
    const { config, source } = await loadPreprocessorConfig(folder);
    return new SamProcessor(config, source);
  }

  get longestEdge(): number {
    return this.config.size.longest_edge;
  }

  /** Decode (PNG/JPEG/TIFF path or buffer, or an RGB image) and preprocess. */
  async preprocess(input: string | Buffer | Uint8Array | RGBImage, opts: PreprocessOptions = {}): Promise<SamPreprocessed> {
    if (typeof input === 'object' && 'width' in input && 'height' in input && 'data' in input) return preprocessRGB(input, this.config);
    const img = await readImageRGB(input, opts);
    const pre = preprocessRGB(img, this.config);
    pre.decodeInfo = img.info;
    return pre;
  }

  preprocessRGB(image: RGBImage): SamPreprocessed {
    return preprocessRGB(image, this.config);
  }

  /** (h, w) the image will be resized to. */
  reshapedSize(originalSize: SizeHW): SizeHW {
    return this.config.do_resize ? getPreprocessShape(originalSize, this.longestEdge) : originalSize;
  }

  /** Prompts in original pixels -> HF tensors in the resized frame (see preparePrompts). */
  prompts(prompts: ImagePrompts | ImagePrompts[], originalSizes: SizeHW | SizeHW[]): SamPromptArrays {
    const list = Array.isArray(prompts) ? prompts : [prompts];
    const origs = (typeof originalSizes[0] === 'number' ? [originalSizes] : originalSizes) as SizeHW[];
    return preparePrompts(list, origs, origs.map((o) => this.reshapedSize(o)));
  }

  postProcessMasks(
    lowRes: tf.Tensor | { data: Float32Array; shape: number[] },
    originalSizes: SizeHW | SizeHW[],
    reshapedSizes: SizeHW | SizeHW[],
    opts: PostProcessOptions = {},
  ): Promise<PostProcessedMasks[]> {
    // HF uses pad_size here even when do_pad is false.
    return postProcessMasks(lowRes, originalSizes, reshapedSizes, { padSize: this.config.pad_size, ...opts });
  }
}
