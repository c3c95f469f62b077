// Layout (a): <root>/images/ + <root>/masks/ (or labels/) with matching file stems.
// The mask of images/X.<ext> is masks/X.<any image ext>; if there is none, masks/X_mask|_seg|_segmentation|
// _label|_labels|_gt.<ext>. More than one candidate is reported as ambiguous.
import { readdir } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { IMAGE_EXTS, isImageFile } from './io.ts';
import { groupFromStem, type LoadOptions, type PairSpec } from './options.ts';
import { loadPairs, type PartialResult } from './pairs.ts';
import type { SkippedItem } from './types.ts';

export const MASK_SUFFIXES = ['_mask', '_seg', '_segmentation', '_label', '_labels', '_gt'];
export const MASK_DIRS = ['masks', 'labels'];

export function stemOf(file: string): string {
  return basename(file, extname(file));
}

async function listFiles(dir: string): Promise<{ files: string[]; ignored: number }> {
  const ents = await readdir(dir, { withFileTypes: true });
  const files: string[] = [];
  let ignored = 0;
  for (const e of ents) {
    if (e.isFile() && !e.name.startsWith('.') && isImageFile(e.name)) files.push(e.name);
    else ignored++;
  }
  return { files: files.sort(), ignored };
}

export async function loadFolder(root: string, maskDirName: string, opts: LoadOptions): Promise<PartialResult> {
  const imageDir = join(root, 'images'), maskDir = join(root, maskDirName);
  const imgs = await listFiles(imageDir);
  const masks = await listFiles(maskDir);
  const notes: string[] = [];
  const skipped: SkippedItem[] = [];
  if (imgs.ignored) notes.push(`${imgs.ignored} entr${imgs.ignored === 1 ? 'y' : 'ies'} in ${imageDir} ignored (hidden, not ${IMAGE_EXTS.join('/')}, or subfolders)`);
  if (masks.ignored) notes.push(`${masks.ignored} entr${masks.ignored === 1 ? 'y' : 'ies'} in ${maskDir} ignored (hidden, not ${IMAGE_EXTS.join('/')}, or subfolders)`);

  const byStem = new Map<string, string[]>();
  for (const f of masks.files) {
    const s = stemOf(f);
    byStem.set(s, [...(byStem.get(s) ?? []), f]);
  }
  const usedMasks = new Set<string>();
  const imageStems = new Map<string, string>();
  const pairs: PairSpec[] = [];
  for (const f of imgs.files) {
    const stem = stemOf(f);
    const prev = imageStems.get(stem);
    if (prev) {
      skipped.push({ file: join(imageDir, f), reason: `two images share the stem "${stem}" (${prev}, ${f}); cannot tell which mask belongs to which` });
      continue;
    }
    imageStems.set(stem, f);
    let cands = byStem.get(stem) ?? [];
    if (cands.length === 0) cands = MASK_SUFFIXES.flatMap((sfx) => byStem.get(stem + sfx) ?? []);
    if (cands.length === 0) {
      skipped.push({ file: join(imageDir, f), reason: `no mask: looked for ${maskDir}/${stem}.{${IMAGE_EXTS.map((e) => e.slice(1)).join(',')}} (or with suffix ${MASK_SUFFIXES.join('/')})` });
      continue;
    }
    cands.forEach((c) => usedMasks.add(c));
    if (cands.length > 1) {
      skipped.push({ file: join(imageDir, f), reason: `ambiguous masks: ${cands.join(', ')}` });
      continue;
    }
    pairs.push({ image: join(imageDir, f), mask: join(maskDir, cands[0]!), group: groupFromStem(stem, opts.groupPattern), idBase: stem });
  }
  for (const m of masks.files) {
    if (!usedMasks.has(m)) skipped.push({ file: join(maskDir, m), reason: `no image with a matching stem in ${imageDir}` });
  }
  const r = await loadPairs(pairs, opts);
  return { samples: r.samples, skipped: [...skipped, ...r.skipped], notes: [...notes, ...r.notes] };
}
