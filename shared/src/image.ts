// Image decode/encode helpers (sharp / libvips).
//
// readImageRGB mirrors what HF's SamImageProcessor sees after `PIL.Image.open(f).convert('RGB')`:
//   - RGB uint8, HWC, row-major. No EXIF auto-rotation (PIL does not rotate on open either; the EXIF tag is
//     reported in `info.orientation` only).
//   - Alpha is dropped, never composited (PIL's RGBA->RGB / LA->RGB conversion drops it too).
//   - Grayscale is replicated to three channels; palette images are expanded through the palette.
//   - Embedded ICC profiles are ignored (PIL does not colour-manage on convert('RGB')).
//   - JPEG: sharp's bundled libjpeg-turbo (mozjpeg build) decodes bit-identically to Pillow 9.4 / libjpeg-turbo
//     2.1.5 on the reference fixtures (ISLOW IDCT, fancy upsampling, 4:2:0 and 4:4:4 checked).
//   - High bit depth (16-bit PNG/TIFF, float/32-bit TIFF) is mapped to 8 bits by an explicit, documented rule
//     (see `HighBitDepthRule`). PIL itself clips 16-bit grayscale to 0..255 (useless for real data) and keeps
//     the most significant byte of 16-bit RGB.
import sharp from 'sharp';

export const SUPPORTED_IMAGE_FORMATS = ['png', 'jpeg', 'tiff'] as const;
const SUPPORTED_TEXT =
  'supported formats: PNG, JPEG, TIFF (8- or 16-bit; grayscale, grayscale+alpha, RGB, RGBA, palette; first page of multi-page TIFF)';

/** RGB uint8 image, HWC row-major (`data.length === height * width * 3`). */
export interface RGBImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/**
 * How samples deeper than 8 bits become uint8:
 * - `'auto'` (default): 16-bit colour -> `'shift'`; 16-bit grayscale and float/32-bit data -> `'minmax'`.
 * - `'shift'`: v >> 8 (most significant byte). What PIL and libvips do for 16-bit RGB; right for full-range photos.
 * - `'minmax'`: linear window [min, max] of the image's colour samples (alpha excluded) -> 0..255,
 *   round(255 * (v - min) / (max - min)); a constant image becomes 0. Right for 16-bit medical/scientific exports
 *   (e.g. 12-bit CT/MR data stored in 16-bit PNG/TIFF), where the values occupy a small part of 0..65535.
 * - `'clip'`: min(max(v, 0), 255). Exactly what PIL's convert('RGB') does for 16-bit grayscale (mode I / I;16).
 * - `{ window: [lo, hi] }`: fixed linear window, clamped (e.g. a CT window in stored units).
 */
export type HighBitDepthRule = 'auto' | 'shift' | 'minmax' | 'clip' | { window: [number, number] };

export interface ReadImageOptions {
  highBitDepth?: HighBitDepthRule;
}

export interface DecodeInfo {
  /** 'png' | 'jpeg' | 'tiff' */
  format: string;
  /** libvips sample format of the file, e.g. 'uchar', 'ushort', 'float'. */
  depth: string;
  /** Colour channels of the file before conversion (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA). */
  channels: number;
  hasAlpha: boolean;
  isPalette: boolean;
  /** libvips interpretation, e.g. 'srgb', 'b-w', 'grey16', 'rgb16'. */
  space: string;
  /** EXIF orientation tag, if any. NOT applied (PIL does not auto-rotate). */
  orientation?: number;
  /** Rule applied to reach 8 bits ('none' for 8-bit input). */
  bitDepthRule: 'none' | 'shift' | 'minmax' | 'clip' | 'window';
  /** Input window mapped to 0..255 for 'minmax' / 'window' / 'clip'. */
  window?: [number, number];
}

export interface DecodedImage extends RGBImage {
  info: DecodeInfo;
}

function describeInput(input: string | Buffer | Uint8Array): string {
  return typeof input === 'string' ? `"${input}"` : `<buffer of ${input.length} bytes>`;
}

function imageError(input: string | Buffer | Uint8Array, reason: string): Error {
  return new Error(`cannot read image ${describeInput(input)}: ${reason}; ${SUPPORTED_TEXT}`);
}

/**
 * Decode a PNG / JPEG / TIFF file (or buffer) to RGB uint8 HWC like PIL's `Image.open(f).convert('RGB')`.
 * Errors name the file and list the supported formats.
 */
export async function readImageRGB(input: string | Buffer | Uint8Array, opts: ReadImageOptions = {}): Promise<DecodedImage> {
  const src = typeof input === 'string' ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const open = () => sharp(src, { ignoreIcc: true, failOn: 'error', autoOrient: false });
  let meta: sharp.Metadata;
  try {
    meta = await open().metadata();
  } catch (e) {
    throw imageError(input, `${firstLine(e)} (unreadable, corrupt or unsupported file)`);
  }
  const format = String(meta.format ?? 'unknown');
  if (!(SUPPORTED_IMAGE_FORMATS as readonly string[]).includes(format)) {
    throw imageError(input, `format "${format}" is not supported`);
  }
  const depth = String(meta.depth ?? 'uchar');
  const space = String(meta.space ?? '');
  const fileChannels = meta.channels ?? 3;
  const hasAlpha = !!meta.hasAlpha;
  const colourChannels = fileChannels - (hasAlpha ? 1 : 0);
  const info: DecodeInfo = {
    format, depth, channels: fileChannels, hasAlpha, isPalette: !!meta.isPalette, space,
    ...(meta.orientation !== undefined ? { orientation: meta.orientation } : {}),
    bitDepthRule: 'none',
  };
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  try {
    if (depth === 'uchar' || depth === 'char') {
      // 8-bit (and 1/2/4-bit, palette): libvips expands palettes and low bit depths to uchar (1-bit -> 0/255).
      // CMYK goes through libvips' CMYK->sRGB conversion (PIL's naive conversion differs; rare for SAM inputs).
      let pipe = open();
      if (space === 'cmyk') pipe = pipe.toColourspace('srgb');
      const { data, info: ri } = await pipe.raw().toBuffer({ resolveWithObject: true });
      const rgb = toRGB8(new Uint8Array(data.buffer, data.byteOffset, data.length), ri.width, ri.height, ri.channels, space === 'cmyk' ? false : hasAlpha);
      return { data: rgb, width: ri.width, height: ri.height, info };
    }
    // Deeper samples: 16-bit unsigned at its native values (grey16/rgb16), anything else (signed, 32-bit, float)
    // as doubles without colourspace changes.
    const gray = colourChannels < 3;
    let samples: Float64Array | Uint16Array;
    let ch: number;
    if (depth === 'ushort') {
      const { data, info: ri } = await open()
        .toColourspace(gray ? 'grey16' : 'rgb16')
        .raw({ depth: 'ushort' })
        .toBuffer({ resolveWithObject: true });
      const aligned = new Uint8Array(data.length);
      aligned.set(data);
      samples = new Uint16Array(aligned.buffer);
      ch = ri.channels;
    } else {
      const { data, info: ri } = await open().raw({ depth: 'double' }).toBuffer({ resolveWithObject: true });
      const aligned = new Uint8Array(data.length);
      aligned.set(data);
      samples = new Float64Array(aligned.buffer);
      ch = ri.channels;
    }
    const rgb = highBitDepthToRGB8(samples, width, height, ch, hasAlpha, depth, opts.highBitDepth ?? 'auto', info);
    return { data: rgb, width, height, info };
  } catch (e) {
    throw imageError(input, `${firstLine(e)} (corrupt or truncated ${format} data?)`);
  }
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0]!.trim();
}

/** Interleaved uint8 with 1..4 channels -> RGB (gray replicated, alpha dropped). */
function toRGB8(src: Uint8Array, w: number, h: number, ch: number, hasAlpha: boolean): Uint8Array {
  const n = w * h;
  if (ch === 3) return new Uint8Array(src.buffer, src.byteOffset, n * 3); // a view: sharp's buffer is this decode's own
  const out = new Uint8Array(n * 3);
  const colour = ch - (hasAlpha ? 1 : 0);
  if (colour <= 1) {
    for (let i = 0, j = 0; i < n; i++, j += ch) {
      const v = src[j]!;
      out[3 * i] = v;
      out[3 * i + 1] = v;
      out[3 * i + 2] = v;
    }
  } else {
    for (let i = 0, j = 0; i < n; i++, j += ch) {
      out[3 * i] = src[j]!;
      out[3 * i + 1] = src[j + 1]!;
      out[3 * i + 2] = src[j + 2]!;
    }
  }
  return out;
}

function highBitDepthToRGB8(
  src: Uint16Array | Float64Array,
  w: number,
  h: number,
  ch: number,
  hasAlpha: boolean,
  depth: string,
  rule: HighBitDepthRule,
  info: DecodeInfo,
): Uint8Array {
  const n = w * h;
  const colour = Math.max(1, ch - (hasAlpha ? 1 : 0)) >= 3 ? 3 : 1;
  let r: 'shift' | 'minmax' | 'clip' | 'window';
  let lo = 0;
  let hi = 255;
  if (typeof rule === 'object') {
    r = 'window';
    [lo, hi] = rule.window;
    if (!(hi > lo)) throw new Error(`highBitDepth window [${lo}, ${hi}] is empty`);
  } else if (rule === 'auto') {
    r = colour === 3 && depth === 'ushort' ? 'shift' : 'minmax';
  } else {
    r = rule;
  }
  if (r === 'shift' && !(src instanceof Uint16Array)) r = 'minmax'; // >>8 only means something for 16-bit
  if (r === 'minmax') {
    lo = Infinity;
    hi = -Infinity;
    for (let i = 0, j = 0; i < n; i++, j += ch) {
      for (let c = 0; c < colour; c++) {
        const v = src[j + c]!;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    if (!Number.isFinite(lo)) lo = hi = 0;
  }
  info.bitDepthRule = r;
  if (r !== 'shift') info.window = r === 'clip' ? [0, 255] : [lo, hi];
  const span = hi - lo;
  const map = (v: number): number => {
    if (r === 'shift') return v >> 8;
    if (r === 'clip') return v <= 0 ? 0 : v >= 255 ? 255 : Math.trunc(v);
    if (!(span > 0)) return 0;
    const t = Math.round(((v - lo) * 255) / span);
    return t <= 0 ? 0 : t >= 255 ? 255 : t;
  };
  const out = new Uint8Array(n * 3);
  for (let i = 0, j = 0; i < n; i++, j += ch) {
    if (colour === 1) {
      const v = map(src[j]!);
      out[3 * i] = v;
      out[3 * i + 1] = v;
      out[3 * i + 2] = v;
    } else {
      out[3 * i] = map(src[j]!);
      out[3 * i + 1] = map(src[j + 1]!);
      out[3 * i + 2] = map(src[j + 2]!);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// writing

/** Mask input: 0/1 (or 0/255) uint8, or float logits/probabilities thresholded at `threshold` (default 0). */
export type MaskLike = Uint8Array | Float32Array;

function maskToBinary(mask: MaskLike, n: number, threshold: number): Uint8Array {
  if (mask.length !== n) throw new Error(`mask has ${mask.length} values, expected ${n}`);
  const out = new Uint8Array(n);
  if (mask instanceof Uint8Array) {
    for (let i = 0; i < n; i++) out[i] = mask[i]! ? 1 : 0;
  } else {
    for (let i = 0; i < n; i++) out[i] = mask[i]! > threshold ? 1 : 0;
  }
  return out;
}

/** Write a single-channel 8-bit PNG mask (0 background / 255 foreground) of size width x height. */
export async function writeMaskPng(
  file: string,
  mask: MaskLike,
  width: number,
  height: number,
  opts: { threshold?: number } = {},
): Promise<void> {
  const bin = maskToBinary(mask, width * height, opts.threshold ?? 0);
  for (let i = 0; i < bin.length; i++) bin[i] = bin[i] ? 255 : 0;
  await sharp(bin, { raw: { width, height, channels: 1 } }).toColourspace('b-w').png().toFile(file);
}

export interface OverlayOptions {
  /** Fill colour, default dodger blue [30, 144, 255]. */
  color?: [number, number, number];
  /** Fill opacity 0..1, default 0.5. */
  alpha?: number;
  /** Outline colour, default the fill colour; `null` disables the outline. */
  outlineColor?: [number, number, number] | null;
  /** Outline thickness in pixels (inner boundary), default max(1, round(min(W,H)/400)). */
  outlineWidth?: number;
  threshold?: number;
  /** Prompt box [x0, y0, x1, y1] in image pixels, drawn as a rectangle over everything else. */
  box?: readonly number[];
  /** Box colour, default yellow [255, 215, 0]. */
  boxColor?: [number, number, number];
}

/**
 * Draw the outline of box [x0, y0, x1, y1] (image pixels, rounded, clipped to the image) into an RGB HWC buffer, in
 * place: `thickness` pixels wide, inward from the box's edges, so the drawn rectangle is exactly the prompt's extent.
 */
export function drawBox(rgb: Uint8Array, width: number, height: number, box: readonly number[], color: readonly number[], thickness = 1): void {
  if (box.length !== 4) throw new RangeError(`drawBox: box must be [x0, y0, x1, y1], got ${box.length} numbers`);
  const clampX = (v: number) => Math.min(width - 1, Math.max(0, Math.round(v)));
  const clampY = (v: number) => Math.min(height - 1, Math.max(0, Math.round(v)));
  const x0 = clampX(Math.min(box[0]!, box[2]!)), x1 = clampX(Math.max(box[0]!, box[2]!));
  const y0 = clampY(Math.min(box[1]!, box[3]!)), y1 = clampY(Math.max(box[1]!, box[3]!));
  const t = Math.max(1, Math.round(thickness));
  const put = (x: number, y: number) => {
    const i = 3 * (y * width + x);
    rgb[i] = color[0]!;
    rgb[i + 1] = color[1]!;
    rgb[i + 2] = color[2]!;
  };
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      if (x - x0 < t || x1 - x < t || y - y0 < t || y1 - y < t) put(x, y);
    }
  }
}

/** RGB uint8 image with the mask blended in a colour plus its outline (returned, not written). */
export function overlayMask(image: RGBImage, mask: MaskLike, opts: OverlayOptions = {}): Uint8Array {
  const { width: w, height: h } = image;
  const bin = maskToBinary(mask, w * h, opts.threshold ?? 0);
  const color = opts.color ?? [30, 144, 255];
  const alpha = Math.min(1, Math.max(0, opts.alpha ?? 0.5));
  const outline = opts.outlineColor === undefined ? color : opts.outlineColor;
  const ow = Math.max(1, Math.round(opts.outlineWidth ?? Math.max(1, Math.round(Math.min(w, h) / 400))));
  const out = new Uint8Array(image.data);
  for (let i = 0; i < w * h; i++) {
    if (!bin[i]) continue;
    for (let c = 0; c < 3; c++) out[3 * i + c] = Math.round((1 - alpha) * out[3 * i + c]! + alpha * color[c]!);
  }
  if (outline) {
    // Inner boundary: foreground pixels within `ow` (Chebyshev distance) of background or the image border.
    // Distance to background along rows then columns (separable erosion with a (2*ow+1)^2 square).
    const rowHit = new Uint8Array(w * h); // 1 if background (or outside) lies within ow horizontally
    const near = new Int32Array(Math.max(w, h));
    for (let y = 0; y < h; y++) {
      const base = y * w;
      let last = -1; // x = -1 is outside (background)
      for (let x = 0; x < w; x++) {
        if (!bin[base + x]) last = x;
        near[x] = x - last;
      }
      last = w; // x = w is outside
      for (let x = w - 1; x >= 0; x--) {
        if (!bin[base + x]) last = x;
        rowHit[base + x] = Math.min(near[x]!, last - x) <= ow ? 1 : 0;
      }
    }
    for (let x = 0; x < w; x++) {
      let last = -1 - ow; // rows outside the image count as background
      for (let y = 0; y < h; y++) {
        if (rowHit[y * w + x]) last = y;
        near[y] = y < ow ? 0 : y - last;
      }
      last = h - 1 + ow + 1;
      for (let y = h - 1; y >= 0; y--) {
        const i = y * w + x;
        if (rowHit[i]) last = y;
        const d = Math.min(near[y]!, y >= h - ow ? 0 : last - y);
        if (bin[i] && d <= ow) {
          out[3 * i] = outline[0];
          out[3 * i + 1] = outline[1];
          out[3 * i + 2] = outline[2];
        }
      }
    }
  }
  if (opts.box) drawBox(out, w, h, opts.box, opts.boxColor ?? [255, 215, 0], ow);
  return out;
}

/** Write the overlay (image + blended mask + outline) as an RGB PNG. */
export async function writeOverlayPng(file: string, image: RGBImage, mask: MaskLike, opts: OverlayOptions = {}): Promise<void> {
  const data = overlayMask(image, mask, opts);
  await sharp(data, { raw: { width: image.width, height: image.height, channels: 3 } }).png().toFile(file);
}

/** Encode an RGB uint8 image as PNG (buffer). */
export async function encodePngRGB(image: RGBImage): Promise<Buffer> {
  return sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } }).png().toBuffer();
}
