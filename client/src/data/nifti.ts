// Layout (c): NIfTI volumes (.nii / .nii.gz) sliced into 2D samples.
//
// Pairing (first rule that applies to the folder):
//  1. <root>/imagesTr + <root>/labelsTr (nnU-Net / Medical Segmentation Decathlon), or <root>/images +
//     <root>/labels|masks holding NIfTI files: imagesTr/X.nii.gz pairs with labelsTr/X.nii.gz; if there is no
//     such label, a trailing 4-digit nnU-Net channel suffix is stripped (X_0000 -> X) and only the requested
//     channel (default _0000) is used; other channel files are counted in the report notes.
//  2. Flat folder: a file whose stem ends in _seg/_label/_labels/_mask/_gt (or -seg, ...) is the label of case
//     <stem without the suffix>; its image is <case>.nii(.gz) or <case>_img/_image/_0000.nii(.gz).
// Each volume (case) is one group. Slices along `axis` (default 2, the last spatial axis) that contain an object
// become samples, one per (slice, label). Slice pixel (row r, col c): c runs along the lower remaining axis,
// r along the higher one (axis 2: c = i, r = j), no flips. Intensities -> 8 bit by a window (level, width) or,
// without one, by clipping to the 0.5–99.5 percentiles of the non-zero voxels (MedSAM's rule), after
// scl_slope/scl_inter. Image and label must agree in dims, and in pixdim/affine within a relative tolerance.
import * as nifti from 'nifti-reader-js';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { grayToRGB, linearTo8bit, mapLimit, percentiles } from './io.ts';
import { parseWindow, type LoadOptions } from './options.ts';
import type { PartialResult } from './pairs.ts';
import type { Box, Sample, SkippedItem } from './types.ts';
import { pathExists } from '@fedsam/shared/fsutil';

const gunzipAsync = promisify(gunzip);

type Header = nifti.NIFTI1 | nifti.NIFTI2;
type NumArray = Uint8Array | Int8Array | Int16Array | Uint16Array | Int32Array | Uint32Array | Float32Array | Float64Array;

export interface NiftiVolume {
  header: Header;
  /** Spatial size [nx, ny, nz] (nz = 1 for 2D files). */
  dims: [number, number, number];
  /** Number of 3D volumes (4th..7th dims multiplied). */
  volumes: number;
  /** Raw voxel values (all volumes), x fastest; apply slope/inter for physical values. */
  data: NumArray;
  slope: number;
  inter: number;
  /** sha256 hex of the file bytes as stored. */
  hash: string;
}

export const isNiftiFile = (f: string): boolean => /\.nii(\.gz)?$/i.test(f) && !f.startsWith('.');
export const niftiStem = (f: string): string => f.replace(/\.nii(\.gz)?$/i, '');

function typed(h: Header, buf: ArrayBuffer): NumArray {
  const code = h.datatypeCode;
  const bytes: Record<number, number> = { 2: 1, 256: 1, 4: 2, 512: 2, 8: 4, 768: 4, 16: 4, 64: 8, 1024: 8, 1280: 8 };
  const size = bytes[code];
  if (!size) throw new Error(`unsupported NIfTI datatype ${code} (${h.getDatatypeCodeString(code)})`);
  if (!h.littleEndian && size > 1) {
    const u = new Uint8Array(buf);
    for (let i = 0; i < u.length; i += size) u.subarray(i, i + size).reverse();
  }
  switch (code) {
    case 2: return new Uint8Array(buf);
    case 256: return new Int8Array(buf);
    case 4: return new Int16Array(buf);
    case 512: return new Uint16Array(buf);
    case 8: return new Int32Array(buf);
    case 768: return new Uint32Array(buf);
    case 16: return new Float32Array(buf);
    case 64: return new Float64Array(buf);
    case 1024: return Float64Array.from(new BigInt64Array(buf), Number);
    default: return Float64Array.from(new BigUint64Array(buf), Number);
  }
}

/** Read and decode a .nii / .nii.gz file (NIfTI-1 or -2). Throws with a readable message on bad input. */
export async function readNifti(path: string): Promise<NiftiVolume> {
  const file = await readFile(path);
  const hash = createHash('sha256').update(file).digest('hex');
  let raw: Uint8Array = file;
  if (file[0] === 0x1f && file[1] === 0x8b) {
    try {
      raw = await gunzipAsync(file);
    } catch (e) {
      throw new Error(`corrupt gzip data: ${(e as Error).message}`);
    }
  }
  const ab = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength) as ArrayBuffer;
  if (!nifti.isNIFTI(ab)) throw new Error('not a NIfTI-1/NIfTI-2 file (bad magic)');
  const header = nifti.readHeader(ab);
  const d = header.dims;
  const nd = d[0]!;
  if (!(nd >= 2 && nd <= 7)) throw new Error(`unsupported dim[0]=${nd}`);
  const dims: [number, number, number] = [d[1]!, d[2]!, nd >= 3 ? Math.max(1, d[3]!) : 1];
  let volumes = 1;
  for (let k = 4; k <= nd; k++) volumes *= Math.max(1, d[k]!);
  const bpv = header.numBitsPerVoxel / 8;
  const need = dims[0] * dims[1] * dims[2] * volumes * bpv;
  const off = Math.round(header.vox_offset);
  if (ab.byteLength < off + need) {
    throw new Error(`truncated: ${ab.byteLength - off} data bytes, header needs ${need}`);
  }
  const data = typed(header, ab.slice(off, off + need));
  let slope = header.scl_slope, inter = header.scl_inter;
  if (!Number.isFinite(slope) || slope === 0) { slope = 1; inter = 0; }
  if (!Number.isFinite(inter)) inter = 0;
  return { header, dims, volumes, data, slope, inter, hash };
}

function hasOrientation(h: Header): boolean {
  return h.qform_code > 0 || h.sform_code > 0;
}

/** Why the label's geometry differs from the image's, or null if they agree. */
export function geometryMismatch(img: NiftiVolume, lab: NiftiVolume, tol = 1e-3): string | null {
  if (img.dims.some((v, i) => v !== lab.dims[i])) return `dims ${lab.dims.join('x')} vs image ${img.dims.join('x')}`;
  const close = (a: number, b: number): boolean => Math.abs(a - b) <= tol * Math.max(1, Math.abs(a), Math.abs(b));
  const pi = img.header.pixDims, pl = lab.header.pixDims;
  for (let k = 1; k <= 3; k++) {
    if (!close(Math.abs(pi[k] ?? 1), Math.abs(pl[k] ?? 1))) {
      const f = (p: number[]): string => p.slice(1, 4).map((v) => +v.toPrecision(6)).join(',');
      return `pixdim ${f(pl)} vs image ${f(pi)}`;
    }
  }
  if (hasOrientation(img.header) && hasOrientation(lab.header)) {
    const ai = img.header.affine, al = lab.header.affine;
    for (let r = 0; r < 3; r++) {
      for (let c = 0; c < 4; c++) {
        if (!close(ai[r]![c]!, al[r]![c]!)) {
          const fmt = (a: number[][]): string => a.slice(0, 3).map((row) => row.map((v) => +v.toPrecision(6)).join(' ')).join('; ');
          return `affine [${fmt(al)}] vs image [${fmt(ai)}]`;
        }
      }
    }
  }
  return null;
}

export interface IntensityRule {
  lo: number;
  hi: number;
  /** Part of the imageKey: `w<L>,<W>` or `p0.5-99.5`. */
  tag: string;
}

/** Physical values (slope/inter applied) of one 3D volume. */
function physical(v: NiftiVolume, channel: number): ArrayLike<number> {
  const n = v.dims[0] * v.dims[1] * v.dims[2];
  const sub = v.data.subarray(channel * n, (channel + 1) * n);
  if (v.slope === 1 && v.inter === 0) return sub;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = sub[i]! * v.slope + v.inter;
  return out;
}

export function intensityRule(values: ArrayLike<number>, window?: [number, number]): IntensityRule {
  if (window) return { lo: window[0] - window[1] / 2, hi: window[0] + window[1] / 2, tag: `w${window[0]},${window[1]}` };
  const [lo, hi] = percentiles(values, [0.5, 99.5], (x) => x !== 0);
  return { lo: lo!, hi: hi!, tag: 'p0.5-99.5' };
}

/** Map a volume to 8 bits with a window / percentile rule. */
export function volumeTo8bit(values: ArrayLike<number>, rule: IntensityRule): Uint8Array {
  return linearTo8bit(values, rule.lo, rule.hi);
}

function planeAxes(axis: number): [number, number] {
  return axis === 0 ? [1, 2] : axis === 1 ? [0, 2] : [0, 1];
}

/** Slice `index` along `axis` of a 3D array (x fastest): [width = dims[u], height = dims[v]]. */
export function extractSlice<T extends NumArray>(
  vol: ArrayLike<number>, dims: [number, number, number], axis: number, index: number, out: T,
): T {
  const [u, v] = planeAxes(axis);
  const st = [1, dims[0], dims[0] * dims[1]];
  const base = index * st[axis]!, su = st[u]!, sv = st[v]!, w = dims[u]!, h = dims[v]!;
  for (let r = 0, o = 0; r < h; r++) {
    const rb = base + r * sv;
    for (let c = 0; c < w; c++) out[o++] = vol[rb + c * su]!;
  }
  return out;
}

interface SliceObject {
  slice: number;
  label: number;
  box: Box;
  area: number;
}

/** Box and area of every (slice, label) with at least one voxel, in one pass over the label volume. */
export function sliceObjects(lab: ArrayLike<number>, dims: [number, number, number], axis: number): SliceObject[] {
  const [u, v] = planeAxes(axis);
  const per = new Map<number, Map<number, SliceObject>>();
  const c = [0, 0, 0];
  let idx = 0;
  for (c[2] = 0; c[2] < dims[2]; c[2]++) {
    for (c[1] = 0; c[1] < dims[1]; c[1]++) {
      for (c[0] = 0; c[0] < dims[0]; c[0]++) {
        const raw = lab[idx++]!;
        if (raw === 0) continue;
        const l = Math.round(raw);
        if (l === 0 || !Number.isFinite(l)) continue;
        const s = c[axis]!, x = c[u]!, y = c[v]!;
        let m = per.get(s);
        if (!m) per.set(s, (m = new Map()));
        let o = m.get(l);
        if (!o) m.set(l, (o = { slice: s, label: l, box: [x, y, x, y], area: 0 }));
        const b = o.box;
        if (x < b[0]) b[0] = x;
        if (x > b[2]) b[2] = x;
        if (y < b[1]) b[1] = y;
        if (y > b[3]) b[3] = y;
        o.area++;
      }
    }
  }
  const out: SliceObject[] = [];
  for (const s of [...per.keys()].sort((a, b) => a - b)) out.push(...[...per.get(s)!.values()].sort((a, b) => a.label - b.label));
  return out;
}

class Lru<T> {
  private m = new Map<string, Promise<T>>();
  constructor(private cap: number) {}
  get(key: string, make: () => Promise<T>): Promise<T> {
    let p = this.m.get(key);
    if (p) this.m.delete(key);
    else {
      p = make();
      p.catch(() => this.m.delete(key));
    }
    this.m.set(key, p);
    while (this.m.size > this.cap) this.m.delete(this.m.keys().next().value!);
    return p;
  }
}

export interface NiftiPair {
  image: string;
  label: string;
  /** Case id = group. */
  id: string;
}


async function niftiFiles(dir: string): Promise<string[]> {
  return (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile() && isNiftiFile(e.name)).map((e) => e.name).sort();
}

/** Rule 1: images dir + labels dir. */
export async function pairSplitDirs(
  imageDir: string, labelDir: string, channel = 0,
): Promise<{ pairs: NiftiPair[]; skipped: SkippedItem[]; notes: string[] }> {
  const imgs = await niftiFiles(imageDir);
  const labs = await niftiFiles(labelDir);
  const labByStem = new Map(labs.map((f) => [niftiStem(f), f]));
  const used = new Set<string>();
  const pairs: NiftiPair[] = [], skipped: SkippedItem[] = [], notes: string[] = [];
  const want = String(channel).padStart(4, '0');
  let otherChannels = 0;
  const seen = new Set<string>();
  for (const f of imgs) {
    const stem = niftiStem(f);
    let id = stem;
    let lab = labByStem.get(stem);
    if (!lab) {
      const m = /^(.*)_(\d{4})$/.exec(stem);
      if (m) {
        if (m[2] !== want) {
          otherChannels++;
          continue;
        }
        id = m[1]!;
        lab = labByStem.get(id);
      }
    }
    if (!lab) {
      skipped.push({ file: join(imageDir, f), reason: `no label volume: looked for ${join(labelDir, id)}.nii(.gz)` });
      continue;
    }
    if (seen.has(id)) {
      skipped.push({ file: join(imageDir, f), reason: `second image for case ${id} (label ${lab} already paired)` });
      continue;
    }
    seen.add(id);
    used.add(lab);
    pairs.push({ image: join(imageDir, f), label: join(labelDir, lab), id });
  }
  for (const f of labs) if (!used.has(f)) skipped.push({ file: join(labelDir, f), reason: `label volume without an image in ${imageDir}` });
  if (otherChannels) notes.push(`${otherChannels} image file(s) of other channels than _${want} in ${imageDir} not used (set channel to choose)`);
  return { pairs, skipped, notes };
}

const LABEL_RE = /^(.*?)[_-](seg|label|labels|mask|gt)$/i;
const IMAGE_SFX_RE = /^(.*?)[_-](img|image|0000)$/i;

/** Rule 2: flat folder with suffix naming. */
export async function pairFlat(dir: string): Promise<{ pairs: NiftiPair[]; skipped: SkippedItem[]; notes: string[] }> {
  const files = await niftiFiles(dir);
  const labels = new Map<string, string>(), images = new Map<string, string[]>();
  for (const f of files) {
    const stem = niftiStem(f);
    const m = LABEL_RE.exec(stem);
    if (m) labels.set(m[1]!, f);
    else {
      const id = IMAGE_SFX_RE.exec(stem)?.[1] ?? stem;
      images.set(id, [...(images.get(id) ?? []), f]);
    }
  }
  const pairs: NiftiPair[] = [], skipped: SkippedItem[] = [];
  for (const [id, imgs] of images) {
    const lab = labels.get(id);
    if (!lab) {
      for (const f of imgs) skipped.push({ file: join(dir, f), reason: `no label volume: looked for ${join(dir, id)}_seg|_label|_labels|_mask|_gt.nii(.gz)` });
      continue;
    }
    if (imgs.length > 1) {
      skipped.push({ file: join(dir, lab), reason: `ambiguous images for case ${id}: ${imgs.join(', ')}` });
      continue;
    }
    pairs.push({ image: join(dir, imgs[0]!), label: join(dir, lab), id });
  }
  for (const [id, f] of labels) if (!images.has(id)) skipped.push({ file: join(dir, f), reason: `label volume without an image (looked for ${id}.nii(.gz) or ${id}_img/_image/_0000)` });
  pairs.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { pairs, skipped, notes: [] };
}

export type NiftiLayout = { imageDir: string; labelDir: string } | { flat: string };

export async function findNiftiLayout(root: string): Promise<NiftiLayout | undefined> {
  for (const [i, l] of [['imagesTr', 'labelsTr'], ['images', 'labels'], ['images', 'masks']] as const) {
    if ((await pathExists(join(root, i))) && (await pathExists(join(root, l))) && (await niftiFiles(join(root, i))).length) {
      return { imageDir: join(root, i), labelDir: join(root, l) };
    }
  }
  if ((await niftiFiles(root)).length) return { flat: root };
  return undefined;
}

export async function loadNifti(layout: NiftiLayout, opts: LoadOptions): Promise<PartialResult> {
  const axis = opts.axis ?? 2;
  if (![0, 1, 2].includes(axis)) throw new RangeError(`axis must be 0, 1 or 2 (got ${axis})`);
  const window = parseWindow(opts.window);
  const channel = opts.channel ?? 0;
  const minArea = opts.minArea ?? 1;
  const wanted = opts.labels ? new Set(opts.labels) : undefined;
  const tol = opts.geometryTolerance ?? 1e-3;
  const found = 'flat' in layout ? await pairFlat(layout.flat) : await pairSplitDirs(layout.imageDir, layout.labelDir, channel);
  const imgCache = new Lru<Uint8Array>(opts.volumeCache ?? 2);
  const labCache = new Lru<NumArray>(opts.volumeCache ?? 2);
  const notes = [...found.notes];
  const noOrientation: string[] = [];

  // Volumes are large: at most 2 pairs in flight.
  const results = await mapLimit(found.pairs, Math.min(2, opts.concurrency ?? 2), async (pair): Promise<PartialResult> => {
    const fail = (file: string, reason: string): PartialResult => ({ samples: [], skipped: [{ file, reason }], notes: [] });
    let lab: NiftiVolume, img: NiftiVolume;
    try {
      lab = await readNifti(pair.label);
    } catch (e) {
      return fail(pair.label, `unreadable label volume: ${(e as Error).message}`);
    }
    try {
      img = await readNifti(pair.image);
    } catch (e) {
      return fail(pair.image, `unreadable image volume: ${(e as Error).message}`);
    }
    if (lab.volumes > 1) return fail(pair.label, `label volume has ${lab.volumes} volumes (4th dim); expected one 3D label map`);
    const geo = geometryMismatch(img, lab, tol);
    if (geo) return fail(pair.label, `label geometry differs from image ${pair.image}: ${geo}`);
    if (!hasOrientation(img.header) || !hasOrientation(lab.header)) noOrientation.push(pair.id);
    if (channel >= img.volumes) return fail(pair.image, `channel ${channel} requested but the image has ${img.volumes} volume(s)`);
    const localNotes: string[] = [];
    if (img.volumes > 1) localNotes.push(`${pair.image}: ${img.volumes} volumes in the 4th dimension, using index ${channel}`);
    const phys = physical(img, channel);
    const rule = intensityRule(phys, window);
    if (!(rule.hi > rule.lo)) localNotes.push(`${pair.image}: constant intensity after ${rule.tag} (${rule.lo}..${rule.hi}); slices are black`);

    let objs = sliceObjects(lab.data, lab.dims, axis);
    if (objs.length === 0) return fail(pair.label, 'label volume has no objects (all voxels are 0)');
    if (wanted) {
      const present = [...new Set(objs.map((o) => o.label))];
      objs = objs.filter((o) => wanted.has(o.label));
      if (objs.length === 0) return fail(pair.label, `none of the requested labels [${[...wanted].join(',')}] occur (labels present: ${present.join(',')})`);
    }
    const small = objs.filter((o) => o.area < minArea);
    objs = objs.filter((o) => o.area >= minArea);
    const skipped: SkippedItem[] = [];
    if (small.length) {
      skipped.push({ file: pair.label, reason: `${small.length} slice object(s) below minArea ${minArea} px (e.g. slice ${small[0]!.slice} label ${small[0]!.label}, ${small[0]!.area} px)` });
    }
    const [u, v] = planeAxes(axis);
    const width = img.dims[u]!, height = img.dims[v]!;
    const dims = img.dims;
    const chTag = img.volumes > 1 ? `:c${channel}` : '';
    const imgKey = `${pair.image}|${channel}|${rule.tag}`;
    const { image: imagePath, label: labelPath } = pair;
    const loadVol8 = (): Promise<Uint8Array> => imgCache.get(imgKey, async () => volumeTo8bit(physical(await readNifti(imagePath), channel), rule));
    const loadLab = (): Promise<NumArray> => labCache.get(labelPath, async () => (await readNifti(labelPath)).data);
    const samples: Sample[] = objs.map((o) => ({
      id: `${pair.id}:a${axis}:s${o.slice}:${o.label}`,
      group: pair.id,
      imageKey: `sha256:${img.hash}${chTag}:a${axis}:s${o.slice}:${rule.tag}`,
      source: { kind: 'slice', path: imagePath, axis, index: o.slice },
      label: o.label,
      box: o.box,
      area: o.area,
      width,
      height,
      loadImage: async () => {
        const g = extractSlice(await loadVol8(), dims, axis, o.slice, new Uint8Array(width * height));
        return { data: grayToRGB(g), width, height };
      },
      loadMask: async () => {
        const s = extractSlice(await loadLab(), dims, axis, o.slice, new Float64Array(width * height));
        const m = new Uint8Array(width * height);
        for (let i = 0; i < m.length; i++) m[i] = Math.round(s[i]!) === o.label ? 1 : 0;
        return m;
      },
    }));
    return { samples, skipped, notes: localNotes };
  });

  const out: PartialResult = { samples: [], skipped: [...found.skipped], notes };
  for (const r of results) {
    out.samples.push(...r.samples);
    out.skipped.push(...r.skipped);
    out.notes.push(...r.notes);
  }
  if (noOrientation.length) notes.push(`${noOrientation.length} case(s) without qform/sform in image or label; affine not compared (e.g. ${noOrientation[0]})`);
  return out;
}
