// Turns 2D image/mask file pairs (folder layout or manifest rows) into samples.
import sharp from 'sharp';
import { hashFile, mapLimit, readLabels, readRGB, type LabelImage } from './io.ts';
import { binaryMask, labelStats } from './mask.ts';
import type { LoadOptions, PairSpec } from './options.ts';
import type { Box, Sample, SkippedItem } from './types.ts';

export interface PartialResult {
  samples: Sample[];
  skipped: SkippedItem[];
  notes: string[];
}

function errMsg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Tiny LRU of decoded masks shared by the samples of one dataset (label-indexed masks give several samples). */
class LabelCache {
  private m = new Map<string, Promise<LabelImage>>();
  constructor(private cap = 4) {}
  get(path: string): Promise<LabelImage> {
    let p = this.m.get(path);
    if (p) {
      this.m.delete(path);
    } else {
      p = readLabels(path);
      p.catch(() => this.m.delete(path));
    }
    this.m.set(path, p);
    while (this.m.size > this.cap) this.m.delete(this.m.keys().next().value!);
    return p;
  }
}

function validBox(b: Box, w: number, h: number): string | null {
  if (b.length !== 4 || !b.every(Number.isFinite)) return `box ${JSON.stringify(b)} is not 4 numbers`;
  if (b[0] > b[2] || b[1] > b[3]) return `box ${JSON.stringify(b)} has x0 > x1 or y0 > y1`;
  if (b[0] < 0 || b[1] < 0 || b[2] > w || b[3] > h) return `box ${JSON.stringify(b)} lies outside the ${w}x${h} image`;
  return null;
}

export async function loadPairs(pairs: PairSpec[], opts: LoadOptions): Promise<PartialResult> {
  const cache = new LabelCache();
  const minArea = opts.minArea ?? 1;
  const wanted = opts.labels ? new Set(opts.labels) : undefined;
  const lossyMasks: string[] = [];
  const colorMasks: string[] = [];
  const name = (p: string): string => p;

  const results = await mapLimit(pairs, opts.concurrency ?? 4, async (pair): Promise<PartialResult> => {
    const skipped: SkippedItem[] = [];
    const where = pair.where ? ` (${pair.where})` : '';
    // Image: decode fully so truncated/corrupt files are caught now, not mid-training.
    let width: number, height: number, hash: string;
    try {
      const info = (await sharp(pair.image, { failOn: 'warning', limitInputPixels: false }).raw()
        .toBuffer({ resolveWithObject: true })).info;
      width = info.width;
      height = info.height;
      hash = await hashFile(pair.image);
    } catch (e) {
      return { samples: [], skipped: [{ file: name(pair.image), reason: `unreadable image${where}: ${errMsg(e)}` }], notes: [] };
    }
    let mask: LabelImage;
    try {
      mask = await readLabels(pair.mask);
    } catch (e) {
      return { samples: [], skipped: [{ file: name(pair.mask), reason: `unreadable mask${where}: ${errMsg(e)}` }], notes: [] };
    }
    if (mask.width !== width || mask.height !== height) {
      return {
        samples: [],
        skipped: [{ file: name(pair.mask), reason: `mask size ${mask.width}x${mask.height} differs from image ${name(pair.image)} ${width}x${height}${where}` }],
        notes: [],
      };
    }
    if (mask.kind === 'binarized-lossy') lossyMasks.push(name(pair.mask));
    if (mask.kind === 'color') colorMasks.push(name(pair.mask));

    const binary = pair.box !== undefined && pair.label === undefined;
    let stats = labelStats(binary ? binaryMask(mask.data) : mask.data, width, height);
    if (stats.length === 0) {
      return { samples: [], skipped: [{ file: name(pair.mask), reason: `mask has no objects (all pixels are 0)${where}` }], notes: [] };
    }
    if (pair.label !== undefined) {
      stats = stats.filter((s) => s.label === pair.label);
      if (stats.length === 0) {
        return { samples: [], skipped: [{ file: name(pair.mask), reason: `label ${pair.label} does not occur in the mask${where}` }], notes: [] };
      }
    } else if (wanted && !binary) {
      const before = stats.length;
      stats = stats.filter((s) => wanted.has(s.label));
      if (stats.length === 0) {
        return { samples: [], skipped: [{ file: name(pair.mask), reason: `none of the requested labels [${[...wanted].join(',')}] occur (mask has ${before} other label(s))${where}` }], notes: [] };
      }
    }
    if (pair.box) {
      const bad = validBox(pair.box, width, height);
      if (bad) return { samples: [], skipped: [{ file: name(pair.mask), reason: `${bad}${where}` }], notes: [] };
    }
    const samples: Sample[] = [];
    for (const s of stats) {
      if (s.area < minArea) {
        skipped.push({ file: name(pair.mask), reason: `object label ${s.label} has ${s.area} pixel(s) < minArea ${minArea}${where}` });
        continue;
      }
      const label = s.label;
      const maskPath = pair.mask, imagePath = pair.image;
      samples.push({
        id: `${pair.idBase}:${label}`,
        group: pair.group,
        imageKey: `sha256:${hash}`,
        source: { kind: 'file', path: imagePath },
        label: binary ? 1 : label,
        box: pair.box ? [...pair.box] as Box : s.box,
        area: s.area,
        width,
        height,
        loadImage: async () => {
          const img = await readRGB(imagePath);
          if (img.width !== width || img.height !== height) throw new Error(`${imagePath} changed size since loading`);
          return img;
        },
        loadMask: async () => {
          const m = await cache.get(maskPath);
          return binary ? binaryMask(m.data) : binaryMask(m.data, label);
        },
      });
    }
    return { samples, skipped, notes: [] };
  });

  const out: PartialResult = { samples: [], skipped: [], notes: [] };
  for (const r of results) {
    out.samples.push(...r.samples);
    out.skipped.push(...r.skipped);
  }
  if (lossyMasks.length) out.notes.push(`${lossyMasks.length} JPEG mask(s) binarized at 128 (lossy masks cannot hold label indices), e.g. ${lossyMasks[0]}`);
  if (colorMasks.length) out.notes.push(`${colorMasks.length} colour mask(s): one object per distinct non-black colour, e.g. ${colorMasks[0]}`);
  return out;
}
