// How much an embedding grid alone limits a SAM-style decoder's masks: each object's ground truth in its box crop
// (shared/src/boxCrop.ts) averaged over a G×G grid of cells, resampled bilinearly to the crop's pixels (as post_process_masks upsamples), thresholded
// at 0.5 and scored (Dice) against itself. A decoder whose tokens carried only their cell's mean occupancy would score
// this; a real token carries more, so it is a guide to what a finer grid can gain, not a ceiling.
//
//   node --import tsx bench/mask-grid-bound.ts [--seed 1] [--images 24] [--grids 16,32,64]
import { parseArgs } from 'node:util';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { boxCropRect } from '@fedsam/shared/boxCrop';
import { renderTable } from '@fedsam/shared/table';
import { resizeBilinearTorch } from '@fedsam/shared/resample/torchBilinear';
import { writeCorpusDataset } from '@fedsam/client/data/corpusDataset';
import { readLabels } from '@fedsam/client/data/io';
import { labelStats, type ObjectStats } from '@fedsam/client/data/mask';

const { values: args } = parseArgs({ options: { seed: { type: 'string', default: '1' }, images: { type: 'string', default: '24' }, grids: { type: 'string', default: '16,32,64' } } });
const grids = args.grids!.split(',').map(Number);
const MODEL_INPUT = 256;

/** Dice of the object's mask against itself pooled to g×g cells over its crop and resampled. */
function pooledDice(label: ArrayLike<number>, W: number, H: number, { label: L, box }: ObjectStats, g: number): number {
  const r = boxCropRect(box, W, H, MODEL_INPUT);
  const cw = r.width / g, ch = r.height / g;
  const cells = new Float32Array(g * g);
  for (let y = 0; y < r.height; y++) for (let x = 0; x < r.width; x++) {
    if (label[(r.y + y) * W + r.x + x] === L) cells[Math.min(g - 1, Math.floor(y / ch)) * g + Math.min(g - 1, Math.floor(x / cw))]! += 1 / (cw * ch);
  }
  const occupancy = resizeBilinearTorch(cells, g, g, r.height, r.width);
  let both = 0, predicted = 0, object = 0;
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const truth = label[y * W + x] === L;
    const inCrop = x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height;
    const p = inCrop ? occupancy[(y - r.y) * r.width + x - r.x]! : 0;
    both += +(p > 0.5 && truth); predicted += +(p > 0.5); object += +truth;
  }
  return (2 * both) / (predicted + object);
}

const work = await mkdtemp(join(tmpdir(), 'fedsam-grid-bound-'));
try {
  const seed = Number(args.seed);
  await writeCorpusDataset({ out: work, split: 'heldout', seed, images: Number(args.images), size: 256 });
  const sums = grids.map(() => 0);
  let n = 0;
  for (const f of (await readdir(join(work, 'masks'))).sort()) {
    const { data, width, height } = await readLabels(join(work, 'masks', f));
    for (const object of labelStats(data, width, height)) {
      grids.forEach((g, k) => { sums[k]! += pooledDice(data, width, height, object, g); });
      n++;
    }
  }
  process.stdout.write(`corpus held-out split, seed ${seed}, ${n} objects in box crops (${MODEL_INPUT}-px model input)\n\n`);
  process.stdout.write(renderTable(['grid (cells per crop side)', 'pooled-mask Dice'], grids.map((g, k) => [`${g}×${g}`, (sums[k]! / n).toFixed(3)])) + '\n');
} finally {
  await rm(work, { recursive: true, force: true });
}
