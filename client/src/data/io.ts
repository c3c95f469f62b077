// Image file I/O with sharp (PNG / JPEG / TIFF, 8- or 16-bit). Kept local to the data module.
import sharp from 'sharp';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, extname } from 'node:path';
import type { RGBImage } from './types.ts';

export const IMAGE_EXTS = ['.png', '.jpg', '.jpeg', '.tif', '.tiff'];
const LOSSY_EXTS = new Set(['.jpg', '.jpeg']);

export function isImageFile(name: string): boolean {
  return IMAGE_EXTS.includes(extname(name).toLowerCase());
}

export function isLossy(name: string): boolean {
  return LOSSY_EXTS.has(extname(name).toLowerCase());
}

export interface GrayImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export interface LabelImage {
  /** One integer label per pixel (0 = background). */
  data: Uint8Array | Uint16Array | Uint32Array;
  width: number;
  height: number;
  /** How the labels were derived, for reporting. */
  kind: 'gray8' | 'gray16' | 'color' | 'binarized-lossy';
}

function open(path: string): sharp.Sharp {
  // failOn 'warning' turns truncated / corrupt files into errors instead of partial images.
  return sharp(path, { failOn: 'warning', limitInputPixels: false });
}

function u16(buf: Buffer): Uint16Array {
  const out = new Uint16Array(buf.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = buf.readUInt16LE(i * 2);
  return out;
}

/** 0.5–99.5 percentile linear rescale of 16-bit values to 8 bits (16-bit PNG/TIFF images). */
export function rescaleTo8bit(values: ArrayLike<number>, loPct = 0.5, hiPct = 99.5): Uint8Array {
  const [lo, hi] = percentiles(values, [loPct, hiPct]);
  return linearTo8bit(values, lo!, hi!);
}

/** Clip to [lo, hi] and map linearly to 0..255 (all 0 when hi <= lo). */
export function linearTo8bit(values: ArrayLike<number>, lo: number, hi: number): Uint8Array {
  const out = new Uint8Array(values.length);
  if (!(hi > lo)) return out;
  const s = 255 / (hi - lo);
  for (let i = 0; i < values.length; i++) {
    const v = (values[i]! - lo) * s;
    out[i] = v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
  }
  return out;
}

/**
 * Percentiles (0..100, linear interpolation like numpy's default) of the values accepted by `keep`.
 * Above `maxSamples` values a deterministic strided subsample is used.
 */
export function percentiles(
  values: ArrayLike<number>, pcts: number[], keep?: (v: number) => boolean, maxSamples = 4_000_000,
): number[] {
  const stride = Math.max(1, Math.ceil(values.length / maxSamples));
  const buf = new Float64Array(Math.ceil(values.length / stride));
  let n = 0;
  for (let i = 0; i < values.length; i += stride) {
    const v = values[i]!;
    if (Number.isFinite(v) && (!keep || keep(v))) buf[n++] = v;
  }
  if (n === 0) return pcts.map(() => 0);
  const s = buf.subarray(0, n).sort();
  return pcts.map((p) => {
    const pos = (Math.min(100, Math.max(0, p)) / 100) * (n - 1);
    const i = Math.floor(pos), f = pos - i;
    return i + 1 < n ? s[i]! * (1 - f) + s[i + 1]! * f : s[i]!;
  });
}

/** Decode an image to 8-bit RGB HWC. Gray is replicated; alpha dropped; 16-bit is percentile-rescaled. */
export async function readRGB(path: string): Promise<RGBImage> {
  const img = open(path);
  const meta = await img.metadata();
  if (meta.depth === 'ushort') {
    const color = (meta.channels ?? 1) >= 3;
    const { data, info } = await img.removeAlpha().toColourspace(color ? 'rgb16' : 'grey16')
      .raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
    const v8 = rescaleTo8bit(u16(data));
    return { data: color ? v8 : grayToRGB(v8), width: info.width, height: info.height };
  }
  const { data, info } = await img.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`unexpected channel count ${info.channels}`);
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

/** Decode an image to 8-bit gray (luma for colour images; 16-bit percentile-rescaled). */
export async function readGray(path: string): Promise<GrayImage> {
  const img = open(path);
  const meta = await img.metadata();
  if (meta.depth === 'ushort') {
    const { data, info } = await img.removeAlpha().toColourspace('grey16').raw({ depth: 'ushort' })
      .toBuffer({ resolveWithObject: true });
    return { data: rescaleTo8bit(u16(data)), width: info.width, height: info.height };
  }
  const { data, info } = await img.removeAlpha().toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
  const c = info.channels;
  const out = new Uint8Array(info.width * info.height);
  for (let i = 0; i < out.length; i++) out[i] = data[i * c]!;
  return { data: out, width: info.width, height: info.height };
}

export function grayToRGB(g: Uint8Array): Uint8Array {
  const out = new Uint8Array(g.length * 3);
  for (let i = 0, j = 0; i < g.length; i++, j += 3) out[j] = out[j + 1] = out[j + 2] = g[i]!;
  return out;
}

/**
 * Decode a mask to integer labels without any intensity change: 8/16-bit gray values are the labels;
 * colour masks (incl. palette PNGs) get one label per distinct non-black colour (ordered by packed RGB);
 * lossy (JPEG) masks are binarized at 128 because compression noise would create spurious labels.
 */
export async function readLabels(path: string): Promise<LabelImage> {
  const img = open(path);
  const meta = await img.metadata();
  const lossy = isLossy(path) || meta.format === 'jpeg';
  if (meta.depth === 'ushort') {
    const color = (meta.channels ?? 1) >= 3;
    const { data, info } = await img.removeAlpha().toColourspace(color ? 'rgb16' : 'grey16')
      .raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
    const v = u16(data);
    if (!color) return { data: v, width: info.width, height: info.height, kind: 'gray16' };
    return colorLabels(v, info.width, info.height, 3, 65536);
  }
  const { data, info } = await img.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  const n = info.width * info.height, c = info.channels;
  let gray = true;
  for (let i = 0; i < n && gray; i++) {
    const r = data[i * c]!;
    if (data[i * c + 1] !== r || data[i * c + 2] !== r) gray = false;
  }
  if (lossy) {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = Math.max(data[i * c]!, data[i * c + 1]!, data[i * c + 2]!) >= 128 ? 1 : 0;
    return { data: out, width: info.width, height: info.height, kind: 'binarized-lossy' };
  }
  if (gray) {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = data[i * c]!;
    return { data: out, width: info.width, height: info.height, kind: 'gray8' };
  }
  return colorLabels(data, info.width, info.height, c, 256);
}

function colorLabels(
  data: ArrayLike<number>, width: number, height: number, c: number, base: number,
): LabelImage {
  const n = width * height;
  const packed = new Float64Array(n);
  const colors = new Set<number>();
  for (let i = 0; i < n; i++) {
    const p = (data[i * c]! * base + data[i * c + 1]!) * base + data[i * c + 2]!;
    packed[i] = p;
    if (p !== 0) colors.add(p);
  }
  const ids = new Map([...colors].sort((a, b) => a - b).map((p, k) => [p, k + 1]));
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = packed[i] === 0 ? 0 : ids.get(packed[i]!)!;
  return { data: out, width, height, kind: 'color' };
}

/** Width/height from the header (cheap; no full decode). */
export async function imageSize(path: string): Promise<{ width: number; height: number }> {
  const m = await open(path).metadata();
  if (!m.width || !m.height) throw new Error('image has no size');
  return { width: m.width, height: m.height };
}

/** Write 8-bit gray (channels=1) or RGB (channels=3) pixels as PNG. */
export async function writePng(path: string, data: Uint8Array, width: number, height: number, channels: 1 | 3 = 1): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  let img = sharp(Buffer.from(data.buffer, data.byteOffset, data.length), { raw: { width, height, channels } });
  if (channels === 1) img = img.toColourspace('b-w');
  await img.png({ compressionLevel: 6 }).toFile(path);
}

/** sha256 hex of a file's bytes (streamed). */
export function hashFile(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path).on('error', reject).on('data', (d) => h.update(d)).on('end', () => resolve(h.digest('hex')));
  });
}

/** Run `fn` over items with bounded concurrency, keeping result order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}
