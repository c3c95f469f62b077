// Options shared by the dataset loaders.
import type { Box } from './types.ts';

export interface LoadOptions {
  /** Force a format instead of auto-detecting. */
  format?: 'auto' | 'folder' | 'manifest' | 'nifti';
  /** Only use these label values (all non-zero labels by default). */
  labels?: number[];
  /** Objects with fewer pixels are skipped (and reported). Default 1 (keep everything). */
  minArea?: number;
  /**
   * Folder layout: group id from the image stem — first capture group of this pattern (whole match if none).
   * Default: the stem itself (one group per image). E.g. /^(patient\d+)_/ groups slices by patient.
   */
  groupPattern?: RegExp | string;
  /** NIfTI: slicing axis 0..2 (default 2, the last spatial axis). */
  axis?: number;
  /** NIfTI: CT window [level, width] or "L,W"; default: 0.5–99.5 percentile clipping of non-zero voxels. */
  window?: [number, number] | string;
  /** NIfTI: modality channel (nnU-Net `_000c` file suffix / 4th dimension index). Default 0. */
  channel?: number;
  /** NIfTI: relative tolerance for pixdim/affine comparison between image and label. Default 1e-3. */
  geometryTolerance?: number;
  /** NIfTI: decoded volumes kept in memory for loadImage/loadMask (LRU). Default 2. */
  volumeCache?: number;
  /** Files decoded in parallel while loading. Default 4. */
  concurrency?: number;
}

/** A 2D image/mask pair to turn into samples (folder layout or manifest row). */
export interface PairSpec {
  image: string;
  mask: string;
  group: string;
  /** Sample ids are `${idBase}:${label}`. */
  idBase: string;
  /** Use only this label value of the mask. */
  label?: number;
  /** Given box (overrides the computed one); without `label` the mask is read as binary (all non-zero). */
  box?: Box;
  /** Where the pair came from, for messages (e.g. "manifest.csv row 3"). */
  where?: string;
}

export function parseWindow(w: LoadOptions['window']): [number, number] | undefined {
  if (w === undefined) return undefined;
  const parts = typeof w === 'string' ? w.split(/[,\s]+/).filter(Boolean).map(Number) : w;
  if (parts.length !== 2 || !parts.every(Number.isFinite) || !(parts[1]! > 0)) {
    throw new RangeError(`invalid window ${JSON.stringify(w)}: expected "level,width" with width > 0, e.g. "40,400"`);
  }
  return [parts[0]!, parts[1]!];
}

export function groupFromStem(stem: string, pattern: LoadOptions['groupPattern']): string {
  if (pattern === undefined) return stem;
  const re = typeof pattern === 'string' ? new RegExp(pattern) : pattern;
  const m = re.exec(stem);
  if (!m) return stem;
  return m[1] ?? m[0];
}
