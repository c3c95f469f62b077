// Layout (b): a CSV (header row) or JSONL manifest, one image/mask pair per row. Paths relative to the manifest.
// Keys (case-insensitive): image (image_path, img), mask (mask_path, label_path, seg, segmentation),
// optional box ("x0,y0,x1,y1" / "x0 y0 x1 y1" / JSON array, or columns x0,y0,x1,y1 / x_min,y_min,x_max,y_max),
// optional group (patient, patient_id, group_id, subject, case), optional label (label value in the mask).
// Without `label` every non-zero label of the mask is one sample; with a `box` but no `label` the mask is read
// as binary (all non-zero pixels = the object). Default group: the image file's stem.
import { parse } from 'csv-parse/sync';
import { readFile } from 'node:fs/promises';
import { dirname, extname, isAbsolute, join } from 'node:path';
import { stemOf } from './folder.ts';
import type { LoadOptions, PairSpec } from './options.ts';
import { loadPairs, type PartialResult } from './pairs.ts';
import { DatasetError, type Box, type SkippedItem } from './types.ts';

const ALIASES: Record<string, string[]> = {
  image: ['image', 'image_path', 'img', 'image_file', 'imagepath'],
  mask: ['mask', 'mask_path', 'label_path', 'seg', 'segmentation', 'mask_file', 'maskpath'],
  box: ['box', 'bbox'],
  group: ['group', 'patient', 'patient_id', 'group_id', 'subject', 'subject_id', 'case', 'case_id'],
  label: ['label', 'label_value', 'label_id'],
};
const BOX_COLS = [['x0', 'y0', 'x1', 'y1'], ['x_min', 'y_min', 'x_max', 'y_max'], ['xmin', 'ymin', 'xmax', 'ymax']];

export const MANIFEST_EXTS = ['.csv', '.jsonl', '.ndjson'];

function pick(row: Record<string, unknown>, key: string): unknown {
  for (const a of ALIASES[key]!) {
    const v = row[a];
    if (v !== undefined && v !== null && v !== '') return v;
  }
  return undefined;
}

function parseBox(row: Record<string, unknown>): Box | undefined | string {
  const v = pick(row, 'box');
  let nums: unknown[] | undefined;
  if (Array.isArray(v)) nums = v;
  else if (typeof v === 'string') {
    const t = v.trim();
    try {
      nums = t.startsWith('[') ? (JSON.parse(t) as unknown[]) : t.split(/[,\s;]+/).filter(Boolean);
    } catch {
      return `box ${JSON.stringify(v)} is not a list of 4 numbers`;
    }
    if (!Array.isArray(nums)) return `box ${JSON.stringify(v)} is not a list of 4 numbers`;
  } else if (v !== undefined) return `box ${JSON.stringify(v)} is not a list of 4 numbers`;
  else {
    for (const cols of BOX_COLS) {
      const vals = cols.map((c) => row[c]);
      if (vals.some((x) => x !== undefined && x !== '')) {
        nums = vals;
        break;
      }
    }
  }
  if (!nums) return undefined;
  const b = nums.map((x) => (typeof x === 'number' ? x : typeof x === 'string' && x.trim() !== '' ? Number(x) : NaN));
  if (b.length !== 4 || !b.every(Number.isFinite)) return `box ${JSON.stringify(v ?? nums)} is not a list of 4 numbers`;
  return b as Box;
}

function lowerKeys(o: Record<string, unknown>): Record<string, unknown> {
  const r: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) r[k.trim().toLowerCase()] = typeof v === 'string' ? v.trim() : v;
  return r;
}

export async function loadManifest(file: string, opts: LoadOptions): Promise<PartialResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new DatasetError(`cannot read manifest ${file}: ${(e as Error).message}`);
  }
  const base = dirname(file);
  const ext = extname(file).toLowerCase();
  const skipped: SkippedItem[] = [];
  const rows: { row: Record<string, unknown>; where: string }[] = [];
  if (ext === '.csv') {
    let recs: Record<string, string>[];
    try {
      recs = parse(text, { columns: true, skip_empty_lines: true, trim: true, bom: true, comment: '#' });
    } catch (e) {
      throw new DatasetError(`cannot parse CSV manifest ${file}: ${(e as Error).message}`);
    }
    recs.forEach((r, i) => rows.push({ row: lowerKeys(r), where: `${file} row ${i + 1}` }));
    const cols = recs.length ? Object.keys(rows[0]!.row) : [];
    if (recs.length && (!ALIASES.image!.some((a) => cols.includes(a)) || !ALIASES.mask!.some((a) => cols.includes(a)))) {
      throw new DatasetError(`manifest ${file} needs an "image" and a "mask" column; found: ${cols.join(', ')}`);
    }
  } else {
    text.split(/\r?\n/).forEach((line, i) => {
      const t = line.trim();
      if (!t || t.startsWith('#')) return;
      try {
        const o = JSON.parse(t) as unknown;
        if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new Error('not a JSON object');
        rows.push({ row: lowerKeys(o as Record<string, unknown>), where: `${file} line ${i + 1}` });
      } catch (e) {
        skipped.push({ file, reason: `line ${i + 1}: invalid JSON (${(e as Error).message})` });
      }
    });
  }

  const resolve = (p: string): string => (isAbsolute(p) ? p : join(base, p));
  const pairs: PairSpec[] = [];
  const seen = new Map<string, number>();
  for (const { row, where } of rows) {
    const image = pick(row, 'image'), mask = pick(row, 'mask');
    if (typeof image !== 'string' || typeof mask !== 'string') {
      skipped.push({ file, reason: `${where.slice(file.length + 1)}: missing ${typeof image !== 'string' ? 'image' : 'mask'} path` });
      continue;
    }
    const box = parseBox(row);
    if (typeof box === 'string') {
      skipped.push({ file, reason: `${where.slice(file.length + 1)}: ${box}` });
      continue;
    }
    const lv = pick(row, 'label');
    const label = lv === undefined ? undefined : Number(lv);
    if (label !== undefined && !(Number.isInteger(label) && label > 0)) {
      skipped.push({ file, reason: `${where.slice(file.length + 1)}: label ${JSON.stringify(lv)} is not a positive integer` });
      continue;
    }
    const g = pick(row, 'group');
    let idBase = image.replace(/\.[^./\\]+$/, '');
    const n = seen.get(idBase) ?? 0;
    seen.set(idBase, n + 1);
    if (n > 0) idBase = `${idBase}@${n}`;
    pairs.push({
      image: resolve(image), mask: resolve(mask), box, label, where,
      group: g === undefined ? stemOf(image) : String(g), idBase,
    });
  }
  const r = await loadPairs(pairs, opts);
  return { samples: r.samples, skipped: [...skipped, ...r.skipped], notes: r.notes };
}
