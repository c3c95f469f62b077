// Why a site's Dice fell after its first local epoch (and the federated global after round 1): the box prompts training
// sees. Each synthetic site is fine-tuned alone, epoch by epoch, from the built-in model, once per box noise, with
// validation always prompted by the tight box; the table prints the validation Dice before training and after every
// epoch, per site and noise, and the mean over the sites.
//
//   node --import tsx bench/boxjitter.ts [--non-iid] [--seed 0] [--image-size 256] [--images-per-site 40] [--epochs 4]
//       [--jitters 20,5,0,sam] [--train-seeds 0,1]
//
// A noise is 'sam' (SAM's own, the built-in model's default) or N (the HF recipe's: each side outwards by 0..N px).
import { parseArgs } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '@fedsam/shared/backend';
import { loadModel } from '@fedsam/shared/model/presets';
import { renderTable, type Cell } from '@fedsam/shared/table';
import { parseBoxJitter } from '@fedsam/shared/train/boxJitter';
import { synthesize } from '@fedsam/client/data/synth';
import { prepareSite, type Site } from '@fedsam/client/engine/site';
import { decoderToHost, setDecoderFromHost } from '@fedsam/client/engine/decoderWeights';
import { trainDecoder, evaluateItems } from '@fedsam/client/engine/trainer';

const { values: args } = parseArgs({
  options: {
    'non-iid': { type: 'boolean', default: false },
    seed: { type: 'string', default: '0' },
    'image-size': { type: 'string', default: '256' },
    'images-per-site': { type: 'string', default: '40' },
    sites: { type: 'string', default: '3' },
    'val-split': { type: 'string', default: '0.25' },
    epochs: { type: 'string', default: '4' },
    lr: { type: 'string' },
    'batch-size': { type: 'string', default: '4' },
    jitters: { type: 'string', default: '20,5,0,sam' },
    'train-seeds': { type: 'string', default: '0,1' },
  },
});
await initBackend();
const num = (k: keyof typeof args) => Number(args[k]);
const jitters = args.jitters!.split(',').map((s) => parseBoxJitter(s.trim()));
const trainSeeds = args['train-seeds']!.split(',').map(Number);
const epochs = num('epochs'), seed = num('seed');
const work = await mkdtemp(join(tmpdir(), 'fedsam-boxjitter-'));
try {
  const dataDir = join(work, 'data');
  await synthesize({ out: dataDir, sites: num('sites'), nonIid: args['non-iid'], seed, imagesPerSite: num('images-per-site'), size: num('image-size') });
  const model = await loadModel(undefined);
  const lr = args.lr ? Number(args.lr) : model.recommendedLr;
  const names = Array.from({ length: num('sites') }, (_, i) => `site-${i + 1}`);
  const sites: Site[] = [];
  for (const n of names) sites.push(await prepareSite({ model, data: join(dataDir, n), valSplit: num('val-split'), seed, cacheDir: join(work, 'cache'), quiet: true }));
  const initial = decoderToHost(model);
  process.stdout.write(`synthetic ${args['non-iid'] ? 'non-IID' : 'IID'} seed ${seed}, ${args['image-size']} px; each site alone, lr ${lr}, batch ${num('batch-size')}, ` +
    `training seeds ${trainSeeds.join(', ')}; validation Dice with the tight box\n`);
  const headers = ['site', 'box noise', 'train seed', 'before', ...Array.from({ length: epochs }, (_, e) => `epoch ${e + 1}`)];
  const rows: Cell[][] = [];
  const sums = new Map<string, number[]>();
  let runs = 0;
  for (const [i, s] of sites.entries()) {
    setDecoderFromHost(model, initial);
    const before = (await evaluateItems(model, s.cache, s.val)).dice;
    for (const jitter of jitters) {
      for (const ts of trainSeeds) {
        setDecoderFromHost(model, initial);
        const history = await trainDecoder(model, s.cache, s.train, s.val, { epochs, lr, batchSize: num('batch-size'), seed: ts, jitter, quiet: true, dataParallel: false });
        const dice = history.map((h) => h.val!.dice);
        rows.push([names[i]!, String(jitter), ts, before, ...dice]);
        const acc = sums.get(String(jitter)) ?? new Array(epochs + 1).fill(0);
        [before, ...dice].forEach((d, k) => { acc[k] += d; });
        sums.set(String(jitter), acc);
      }
    }
    runs += trainSeeds.length;
  }
  for (const [j, acc] of sums) rows.push(['mean', j, '', ...acc.map((x) => x / runs)]);
  process.stdout.write(renderTable(headers, rows) + '\n');
} finally {
  await rm(work, { recursive: true, force: true });
}
