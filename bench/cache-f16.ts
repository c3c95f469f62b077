// What storing cached embeddings as float16 costs in accuracy and saves on disk.
//
//   node --import tsx bench/cache-f16.ts [--images 32] [--epochs 8] [--seeds 2] [--batch-size 4]
//
// The built-in fedsam-tiny model is trained on one synthetic site twice per seed: with a float32 cache and with a
// float16 cache (same seed, same grouped split, same starting weights); validation Dice / IoU after training, the
// bytes on disk of each cache, and how far float16 moved the embeddings.
import { parseArgs } from 'node:util';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '@fedsam/shared/backend';
import { renderTable, type Cell } from '@fedsam/shared/table';
import { synthesize } from '@fedsam/client/data/synth';
import { prepareSite } from '@fedsam/client/engine/site';
import { trainDecoder, evaluateItems } from '@fedsam/client/engine/trainer';

const { values: args } = parseArgs({
  options: {
    images: { type: 'string', default: '32' },
    epochs: { type: 'string', default: '8' },
    seeds: { type: 'string', default: '2' },
    'batch-size': { type: 'string', default: '4' },
  },
});
const backend = await initBackend();

async function bytesIn(dir: string): Promise<{ bytes: number; files: number }> {
  let bytes = 0, files = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile() || !e.name.endsWith('.safetensors')) continue;
    bytes += (await stat(join(e.parentPath ?? (e as any).path, e.name))).size;
    files++;
  }
  return { bytes, files };
}

const root = await mkdtemp(join(tmpdir(), 'fedsam-bench-f16-'));
try {
  const images = Number(args.images), epochs = Number(args.epochs), batchSize = Number(args['batch-size']);
  await synthesize({ out: join(root, 'data'), sites: 1, imagesPerSite: images, seed: 3, size: 256 });
  const rows: Cell[][] = [];
  const disk: Record<string, { bytes: number; files: number }> = {};
  const dice: Record<string, number[]> = { f32: [], f16: [] };
  let worstRel = 0, meanAbs = 0, count = 0, header = '';
  for (let seed = 0; seed < Number(args.seeds); seed++) {
    const runs: Record<string, Awaited<ReturnType<typeof prepareSite>>> = {};
    for (const kind of ['f32', 'f16'] as const) {
      const cacheDir = join(root, `cache-${kind}`); // shared across seeds: the second seed only reads
      const site = await prepareSite({ data: join(root, 'data', 'site-1'), seed, cacheDir, float16Cache: kind === 'f16', quiet: true, valSplit: 0.25 });
      runs[kind] = site;
      header = `${site.train.length} training / ${site.val.length} validation objects, ${images} images, ${epochs} epochs, lr ${site.loaded.recommendedLr}, batch ${batchSize}`;
      const before = await evaluateItems(site.loaded, site.cache, site.val, { batchSize });
      const hist = await trainDecoder(site.loaded, site.cache, site.train, site.val, { epochs, lr: site.loaded.recommendedLr, batchSize, seed, quiet: true });
      const v = hist[hist.length - 1].val!;
      dice[kind].push(v.dice);
      rows.push([seed, kind, before.dice, v.dice, v.iou, v.dice256, v.iou256, hist[hist.length - 1].trainLoss]);
      disk[kind] = await bytesIn(cacheDir);
    }
    if (seed === 0) {
      // how far float16 storage moved the embeddings
      for (const it of runs.f32.train.concat(runs.f32.val)) {
        const a = (await runs.f32.cache.get(it.key))!.data;
        const b = (await runs.f16.cache.get(runs.f16.cache.keyFor(it.sample.imageKey)))!.data;
        for (let i = 0; i < a.length; i++) {
          const d = Math.abs(a[i] - b[i]);
          meanAbs += d;
          count++;
          worstRel = Math.max(worstRel, d / Math.max(1, Math.abs(a[i])));
        }
      }
    }
    for (const s of Object.values(runs)) s.loaded.model.dispose();
  }
  console.log(`## float32 vs float16 embedding cache: fedsam-tiny, ${header}; backend ${backend.name}`);
  console.log(renderTable(['seed', 'cache', 'val Dice untrained', 'val Dice', 'val IoU', 'Dice@low-res', 'IoU@low-res', 'train loss'], rows, { digits: 4 }));
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const deltas = dice.f16.map((d, i) => d - dice.f32[i]);
  console.log(`\nDice(f16) - Dice(f32) per seed: ${deltas.map((d) => d.toExponential(2)).join(', ')} (mean ${mean(deltas).toExponential(2)})` +
    (dice.f32.length > 1 ? `; seed-to-seed spread of Dice(f32): ${(Math.max(...dice.f32) - Math.min(...dice.f32)).toFixed(4)}` : ''));
  console.log(`embeddings: mean |f16 - f32| ${(meanAbs / count).toExponential(2)}, worst relative error ${worstRel.toExponential(2)}`);
  console.log(renderTable(['cache', 'files', 'bytes on disk', 'bytes/image'], (['f32', 'f16'] as const).map((k) => [k, disk[k].files, disk[k].bytes, Math.round(disk[k].bytes / disk[k].files)])));
  console.log(`float16 / float32 bytes: ${(disk.f16.bytes / disk.f32.bytes).toFixed(3)}`);
} finally {
  await rm(root, { recursive: true, force: true });
}
