// Where a pretrained model loses on the corpus's held-out data: to the held-out shape families, to the held-out
// appearance regimes, or already on what it trained on. Draws four corpus folders of one seed (train / held-out
// shape families × train / held-out regimes; `fedsam synth --generator corpus --families --regimes`), evaluates the
// model on every object with the tight box (as `fedsam evaluate --split all`, box crops as the model folder says)
// and prints its mean Dice beside the box and Otsu-in-box baselines, per set, regime and shape family.
//
//   node --import tsx bench/heldout-gap.ts [--model DIR] [--seed 9] [--images 24]
//
// Use a seed no pretraining run used (the built-in model's runs drew seeds 1 and 3).
import { parseArgs } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '@fedsam/shared/backend';
import { loadModel } from '@fedsam/shared/model/presets';
import { renderTable, type Cell } from '@fedsam/shared/table';
import { corpusTags, type CorpusSplit } from '@fedsam/shared/pretrain/corpus';
import { writeCorpusDataset } from '@fedsam/client/data/corpusDataset';
import { prepareSite } from '@fedsam/client/engine/site';
import { evaluateItems } from '@fedsam/client/engine/trainer';

const { values: args } = parseArgs({ options: { model: { type: 'string' }, seed: { type: 'string', default: '9' }, images: { type: 'string', default: '24' } } });
await initBackend();
const seed = Number(args.seed), images = Number(args.images);
const SETS: [string, CorpusSplit, CorpusSplit][] = [
  ['train shapes, train regimes', 'train', 'train'],
  ['held-out shapes, train regimes', 'heldout', 'train'],
  ['train shapes, held-out regimes', 'train', 'heldout'],
  ['held-out shapes, held-out regimes', 'heldout', 'heldout'],
];
const work = await mkdtemp(join(tmpdir(), 'fedsam-heldout-gap-'));
try {
  const model = await loadModel(args.model);
  process.stdout.write(`model ${model.source}; corpus seed ${seed}, ${images} images per set; tight box prompts\n\n`);
  const setRows: Cell[][] = [], partRows: Cell[][] = [];
  for (const [name, families, regimes] of SETS) {
    const out = join(work, `${families}-${regimes}`);
    const summary = await writeCorpusDataset({ out, split: families, families, regimes, seed, images, size: 256 });
    const site = await prepareSite({ model, data: out, noSplit: true, seed, cacheDir: join(work, 'cache'), quiet: true });
    const m = await evaluateItems(site.loaded, site.cache, site.val, { baselines: true });
    setRows.push([name, m.n, m.dice, m.boxDice, m.otsuDice!]);
    // per regime and shape family: an object's id is "<image stem>:<label>", its tags are summary.tags[image]
    const parts = new Map<string, number[][]>();
    for (const o of m.objects!) {
      const [stem, label] = o.id.split(':');
      const tags = corpusTags(summary.tags[Number(stem!.replace(/\D/g, ''))]);
      for (const key of [`regime ${tags.regime}`, `object ${tags.families[Number(label) - 1] ?? '?'}`]) {
        const list = parts.get(key) ?? [];
        list.push([o.dice, o.boxDice, o.otsuDice]);
        parts.set(key, list);
      }
    }
    for (const [key, v] of [...parts].sort()) {
      const mean = (j: number) => v.reduce((a, x) => a + x[j]!, 0) / v.length;
      partRows.push([name, key, v.length, mean(0), mean(1), mean(2)]);
    }
  }
  process.stdout.write(renderTable(['set', 'objects', 'model Dice', 'box Dice', 'Otsu Dice'], setRows) + '\n\n');
  process.stdout.write(renderTable(['set', 'regime / shape family', 'objects', 'model Dice', 'box Dice', 'Otsu Dice'], partRows) + '\n');
  model.model.dispose();
} finally {
  await rm(work, { recursive: true, force: true });
}
