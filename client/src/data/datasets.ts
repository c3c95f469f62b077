// loadDataset: auto-detects the layout and returns samples plus a report of everything skipped.
//   file *.csv / *.jsonl / *.ndjson            -> manifest
//   dir with imagesTr/+labelsTr/ (NIfTI)       -> NIfTI (nnU-Net / MSD)
//   dir with images/ + masks/|labels/          -> NIfTI if images/ holds .nii(.gz), else 2D folder layout
//   dir with manifest.csv / manifest.jsonl     -> manifest
//   dir with *.nii(.gz) files                  -> NIfTI flat (suffix pairing)
import { isDirectory } from '@fedsam/shared/fsutil';
import { stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { MASK_DIRS, loadFolder } from './folder.ts';
import { IMAGE_EXTS } from './io.ts';
import { MANIFEST_EXTS, loadManifest } from './manifest.ts';
import { findNiftiLayout, loadNifti } from './nifti.ts';
import type { LoadOptions } from './options.ts';
import type { PartialResult } from './pairs.ts';
import { DatasetError, type DatasetReport, type Sample } from './types.ts';

export type { LoadOptions } from './options.ts';

const LOOKED_FOR = `images/ + masks/ folders with matching stems (${IMAGE_EXTS.join(' ')}), a manifest (${MANIFEST_EXTS.join(' ')} file, or manifest.csv / manifest.jsonl in the folder), or NIfTI pairs (imagesTr/ + labelsTr/, or <case>.nii.gz + <case>_seg.nii.gz)`;

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

export async function loadDataset(path: string, opts: LoadOptions = {}): Promise<{ samples: Sample[]; report: DatasetReport }> {
  let st;
  try {
    st = await stat(path);
  } catch {
    throw new DatasetError(`dataset path ${path} does not exist`);
  }
  const format = opts.format ?? 'auto';
  let kind: DatasetReport['format'];
  let result: PartialResult;

  if (st.isFile()) {
    if (!MANIFEST_EXTS.includes(extname(path).toLowerCase()) && format !== 'manifest') {
      throw new DatasetError(`${path} is a file but not a manifest (${MANIFEST_EXTS.join(', ')}); give a folder for image/mask or NIfTI datasets`);
    }
    kind = 'manifest';
    result = await loadManifest(path, opts);
  } else {
    const maskDir = await (async () => {
      for (const d of MASK_DIRS) if (await isDirectory(join(path, d))) return d;
      return undefined;
    })();
    const nifti = format === 'auto' || format === 'nifti' ? await findNiftiLayout(path) : undefined;
    const manifest = await (async () => {
      for (const f of ['manifest.csv', 'manifest.jsonl']) if (await isFile(join(path, f))) return join(path, f);
      return undefined;
    })();
    if (nifti && (format === 'nifti' || !('flat' in nifti) || (!maskDir && !manifest))) {
      kind = 'nifti';
      result = await loadNifti(nifti, opts);
    } else if ((format === 'auto' || format === 'folder') && maskDir && (await isDirectory(join(path, 'images')))) {
      kind = 'folder';
      result = await loadFolder(path, maskDir, opts);
    } else if ((format === 'auto' || format === 'manifest') && manifest) {
      kind = 'manifest';
      result = await loadManifest(manifest, opts);
    } else {
      throw new DatasetError(`no dataset found in ${path}${format !== 'auto' ? ` (format ${format})` : ''}: looked for ${LOOKED_FOR}`);
    }
  }

  const { samples, skipped, notes } = result;
  const report: DatasetReport = {
    format: kind,
    root: path,
    samples: samples.length,
    images: new Set(samples.map((s) => s.imageKey)).size,
    groups: new Set(samples.map((s) => s.group)).size,
    skipped,
    notes,
  };
  if (samples.length === 0) {
    const why = skipped.length
      ? `; all ${skipped.length} item(s) were skipped:\n${skipped.slice(0, 10).map((s) => `  ${s.file}: ${s.reason}`).join('\n')}${skipped.length > 10 ? `\n  ... and ${skipped.length - 10} more` : ''}`
      : '';
    throw new DatasetError(`no samples in ${path} (${kind} layout; looked for ${LOOKED_FOR})${why}`);
  }
  return { samples, report };
}

/** Human-readable multi-line summary of a report. */
export function formatReport(r: DatasetReport): string {
  const lines = [`dataset ${r.root} (${r.format}): ${r.samples} samples from ${r.images} images in ${r.groups} groups; ${r.skipped.length} skipped`];
  for (const s of r.skipped) lines.push(`  skipped ${s.file}: ${s.reason}`);
  for (const n of r.notes) lines.push(`  note: ${n}`);
  return lines.join('\n');
}
