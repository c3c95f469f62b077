// Why federated training loses to training alone, round by round: an in-process reproduction of `fedsam simulate`
// (the same synthetic data, split, local trainer, per-site seeds and aggregation math as the server's strategies)
// that logs what the gRPC run does not.
//
//   node --import tsx bench/fedquality.ts [--non-iid] [--seed 0] [--image-size 256] [--images-per-site 40]
//       [--rounds 6] [--epochs 2] [--lr 3e-3] [--methods fedavg,fedavg+keep,fedavgm+keep] [--baselines] [--personalize] [--summary]
//
// A method is a strategy (fedavg | fedavgm | fedadam | fedprox | scaffold) with modifiers joined by '+':
//   keep      the site's Adam state persists across rounds (fit.optimizer_state: keep); without it a fresh Adam
//   warmupN   linear lr warm-up over the optimizer's first N steps (fit.warmup_steps: N); 'warmup' = one epoch
//   decayX    lr multiplied by X every round after the first (server-side schedule)
//   momX      FedAvgM server momentum X (default 0.5), etaX FedAdam server lr (default: the lr, as the server's), muX FedProx proximal weight
// Per round and site: the update's norm ‖w_site − w_global‖ and its cosine to the mean update, the train loss over
// the first and last steps of local training, the site model's own validation Dice; then the global model's Dice
// before and after the round. --baselines adds box / local-only / centralized with the same epoch budget (the
// --compare rows); --personalize the Dice after one more local epoch from the final global at each site.
import { parseArgs } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '@fedsam/shared/backend';
import { loadModel } from '@fedsam/shared/model/presets';
import type { HostTensor } from '@fedsam/shared/safetensors';
import { renderTable, type Cell } from '@fedsam/shared/table';
import { adamInit, adamDispose, type AdamState } from '@fedsam/shared/train/adam';
import { synthesize } from '@fedsam/client/data/synth';
import { prepareSite, type Site } from '@fedsam/client/engine/site';
import { decoderToHost, setDecoderFromHost } from '@fedsam/client/engine/decoderWeights';
import { trainDecoder, evaluateItems } from '@fedsam/client/engine/trainer';
import { SiteDriftControl } from '@fedsam/client/engine/driftControl';
import { boxBaseline } from '@fedsam/client/engine/boxBaseline';
import { fedAvg, fedAvgMStep, fedOptStep, type NamedTensors, type FedOptMoments } from '@fedsam/server/strategy/aggregate';
import { siteSeed } from '@fedsam/server/strategy/sampling';
import { fedAdamEta } from '@fedsam/server/strategy/config';

const { values: args } = parseArgs({
  options: {
    'non-iid': { type: 'boolean', default: false },
    seed: { type: 'string', default: '0' },
    'image-size': { type: 'string', default: '256' },
    'images-per-site': { type: 'string', default: '40' },
    sites: { type: 'string', default: '3' },
    'val-split': { type: 'string', default: '0.25' },
    rounds: { type: 'string', default: '6' },
    epochs: { type: 'string', default: '2' },
    lr: { type: 'string' },
    'batch-size': { type: 'string', default: '4' },
    methods: { type: 'string', default: 'fedavg,fedavg+keep' },
    baselines: { type: 'boolean', default: false },
    personalize: { type: 'boolean', default: false },
    /** Only the summary row per method (no per-round, per-site tables). */
    summary: { type: 'boolean', default: false },
    data: { type: 'string' },
  },
});
const num = (k: keyof typeof args) => Number(args[k]);
await initBackend();

interface Method {
  label: string;
  strategy: 'fedavg' | 'fedavgm' | 'fedadam' | 'fedprox' | 'scaffold';
  keep: boolean;
  /** undefined: none; -1: one epoch of steps. */
  warmup?: number;
  decay: number;
  momentum: number;
  /** FedAdam server lr; undefined: the sites' lr (the server's default, fedAdamEta). */
  eta?: number;
  mu: number;
}

function parseMethod(spec: string): Method {
  const [strategy, ...mods] = spec.split('+');
  if (!['fedavg', 'fedavgm', 'fedadam', 'fedprox', 'scaffold'].includes(strategy!)) throw new Error(`unknown strategy "${strategy}" in --methods ${spec}: fedavg | fedavgm | fedadam | fedprox | scaffold`);
  const m: Method = { label: spec, strategy: strategy as Method['strategy'], keep: false, decay: 1, momentum: 0.5, mu: 0.01 };
  for (const x of mods) {
    const v = (p: string) => Number(x.slice(p.length));
    if (x === 'keep') m.keep = true;
    else if (x === 'warmup') m.warmup = -1;
    else if (x.startsWith('warmup')) m.warmup = v('warmup');
    else if (x.startsWith('decay')) m.decay = v('decay');
    else if (x.startsWith('mom')) m.momentum = v('mom');
    else if (x.startsWith('eta')) m.eta = v('eta');
    else if (x.startsWith('mu')) m.mu = v('mu');
    else throw new Error(`unknown modifier "${x}" in --methods ${spec}: keep, warmup[N], decayX, momX, etaX, muX`);
  }
  return m;
}

const methods = args.methods!.split(',').map(parseMethod);
const rounds = num('rounds'), epochs = num('epochs'), batchSize = num('batch-size'), seed = num('seed');
const work = await mkdtemp(join(tmpdir(), 'fedsam-fedquality-'));

try {
  let dataDir = args.data;
  if (!dataDir) {
    dataDir = join(work, 'data');
    await synthesize({ out: dataDir, sites: num('sites'), nonIid: args['non-iid'], seed, imagesPerSite: num('images-per-site'), size: num('image-size') });
  }
  const model = await loadModel(undefined);
  const lr = args.lr ? Number(args.lr) : model.recommendedLr;
  const names = Array.from({ length: num('sites') }, (_, i) => `site-${i + 1}`);
  const sites: Site[] = [];
  for (const n of names) sites.push(await prepareSite({ model, data: join(dataDir, n), valSplit: num('val-split'), seed, cacheDir: join(work, 'cache'), quiet: true }));
  const initial = decoderToHost(model);
  const nVal = sites.reduce((a, s) => a + s.val.length, 0);
  process.stdout.write(`${args.data ?? `synthetic ${args['non-iid'] ? 'non-IID' : 'IID'} seed ${seed}, ${args['image-size']} px, ${args['images-per-site']} images/site`}; ` +
    `${rounds} rounds x ${epochs} epochs, lr ${lr}, batch ${batchSize}; ${sites.map((s, i) => `${names[i]} ${s.train.length}/${s.val.length}`).join(', ')} train/val objects\n`);

  /** Weighted (by validation objects) mean Dice of the model's current decoder over the sites, and each site's. */
  async function evalAll(): Promise<{ mean: number; sites: number[] }> {
    const d: number[] = [];
    for (const s of sites) d.push((await evaluateItems(model, s.cache, s.val)).dice);
    return { mean: d.reduce((a, x, i) => a + x * sites[i]!.val.length, 0) / nVal, sites: d };
  }

  const summary: Cell[][] = [];
  const summaryHeaders = ['method', 'budget', ...names.map((n) => `${n} Dice`), 'mean Dice', 'per round', ...(args.personalize ? ['+1 local epoch'] : [])];

  if (args.baselines) {
    const box = await Promise.all(sites.map((s) => boxBaseline(s.val)));
    summary.push(['box baseline', '', ...box, box.reduce((a, x, i) => a + x * sites[i]!.val.length, 0) / nVal, '']);
    const local: number[] = [];
    for (const s of sites) {
      setDecoderFromHost(model, initial);
      await trainDecoder(model, s.cache, s.train, [], { epochs: rounds * epochs, lr, batchSize, seed, quiet: true, dataParallel: false });
      local.push((await evaluateItems(model, s.cache, s.val)).dice);
    }
    summary.push(['local-only', `${rounds * epochs} ep`, ...local, local.reduce((a, x, i) => a + x * sites[i]!.val.length, 0) / nVal, '']);
    setDecoderFromHost(model, initial);
    await trainDecoder(model, sites[0]!.cache, sites.flatMap((s) => s.train), [], { epochs: rounds * epochs, lr, batchSize, seed, quiet: true, dataParallel: false });
    const c = await evalAll();
    summary.push(['centralized', `${rounds * epochs} ep`, ...c.sites, c.mean, '']);
  }

  for (const m of methods) {
    const detail: Cell[][] = [];
    const adam = new Map<string, AdamState>();
    const drift = names.map(() => new SiteDriftControl(undefined, 'bench'));
    let global: NamedTensors = initial;
    let momentum: NamedTensors | undefined;
    let moments: FedOptMoments | undefined;
    setDecoderFromHost(model, global);
    const curve: number[] = [(await evalAll()).mean];
    for (let round = 1; round <= rounds; round++) {
      const roundLr = lr * Math.pow(m.decay, round - 1);
      const updates: { weights: NamedTensors; numExamples: number }[] = [];
      const stats: { loss0: number; loss1: number; own: number }[] = [];
      for (let i = 0; i < sites.length; i++) {
        const s = sites[i]!;
        setDecoderFromHost(model, global);
        const state = m.keep ? (adam.get(names[i]!) ?? adamInit()) : adamInit();
        adam.set(names[i]!, state);
        const losses: number[] = [];
        const stepsPerEpoch = Math.ceil(s.train.length / batchSize);
        const correction = m.strategy === 'scaffold' ? await drift[i]!.correctionFor(global, round) : undefined;
        const history = await trainDecoder(model, s.cache, s.train, [], {
          epochs, lr: roundLr, batchSize, seed: siteSeed(seed, round, names[i]!) * 1000 + round, quiet: true, dataParallel: false, adam: state,
          warmupSteps: m.warmup === -1 ? stepsPerEpoch : m.warmup, proximalMu: m.strategy === 'fedprox' ? m.mu : undefined,
          driftCorrection: correction, onStep: (p) => losses.push(p.loss),
        });
        if (m.strategy === 'scaffold') await drift[i]!.record(global, decoderToHost(model), history.reduce((a, e) => a + e.lrSum, 0), round, correction);
        if (!m.keep) adamDispose(state);
        const k = Math.min(3, losses.length);
        const mean = (xs: number[]) => xs.reduce((a, x) => a + x, 0) / xs.length;
        stats.push({ loss0: mean(losses.slice(0, k)), loss1: mean(losses.slice(-k)), own: (await evaluateItems(model, s.cache, s.val)).dice });
        updates.push({ weights: decoderToHost(model), numExamples: s.train.length });
      }
      const mean = fedAvg(updates); // the server weighs by the reported counts in simulate (weighting: reported)
      let next = mean;
      if (m.strategy === 'fedavgm') {
        const r = fedAvgMStep(global, mean, momentum, { server_learning_rate: 1, server_momentum: m.momentum });
        next = r.weights;
        momentum = r.momentum;
      } else if (m.strategy === 'fedadam') {
        const r = fedOptStep('adam', global, mean, moments, { eta: fedAdamEta(m.eta, lr), beta_1: 0.9, beta_2: 0.99, tau: 1e-9 }, round, { inPlaceMoments: true });
        next = r.weights;
        moments = r.moments;
      }
      // Update geometry: each site's delta against the mean delta.
      const deltas = updates.map((u) => diff(u.weights, global));
      const meanDelta = diff(mean, global);
      const before = curve[curve.length - 1]!;
      setDecoderFromHost(model, next);
      const after = await evalAll();
      curve.push(after.mean);
      sites.forEach((_, i) => detail.push([round, names[i]!, norm(deltas[i]!), cosine(deltas[i]!, meanDelta), stats[i]!.loss0, stats[i]!.loss1, stats[i]!.own,
        i === 0 ? before : undefined, i === 0 ? after.mean : undefined, i === 0 ? norm(meanDelta) : undefined]));
      global = next;
    }
    for (const a of adam.values()) adamDispose(a);
    setDecoderFromHost(model, global);
    const fin = await evalAll();
    let pers: number | undefined;
    if (args.personalize) {
      const d: number[] = [];
      for (let i = 0; i < sites.length; i++) {
        setDecoderFromHost(model, global);
        await trainDecoder(model, sites[i]!.cache, sites[i]!.train, [], { epochs: 1, lr, batchSize, seed: seed + 7, quiet: true, dataParallel: false });
        d.push((await evaluateItems(model, sites[i]!.cache, sites[i]!.val)).dice);
      }
      pers = d.reduce((a, x, i) => a + x * sites[i]!.val.length, 0) / nVal;
    }
    if (!args.summary) {
      process.stdout.write(`\n${m.label}\n` + renderTable(['round', 'site', '|update|', 'cos to mean', 'loss start', 'loss end', 'site model Dice', 'global Dice before', 'global Dice after', '|mean update|'],
        detail, { digits: 3 }) + '\n');
    }
    summary.push([m.label, `${rounds}x${epochs} ep`, ...fin.sites, fin.mean, curve.map((x) => x.toFixed(3)).join(' '), ...(args.personalize ? [pers] : [])]);
  }
  process.stdout.write('\n' + renderTable(summaryHeaders, summary, { digits: 3 }) + '\n');
  model.model.dispose();
} finally {
  await rm(work, { recursive: true, force: true });
}

function diff(a: NamedTensors, b: NamedTensors): Float64Array[] {
  return [...a].map(([n, t]) => {
    const x = t.data as Float32Array, y = (b.get(n) as HostTensor).data as Float32Array;
    const d = new Float64Array(x.length);
    for (let i = 0; i < x.length; i++) d[i] = x[i]! - y[i]!;
    return d;
  });
}

function dot(a: Float64Array[], b: Float64Array[]): number {
  let s = 0;
  a.forEach((x, k) => { const y = b[k]!; for (let i = 0; i < x.length; i++) s += x[i]! * y[i]!; });
  return s;
}

function norm(a: Float64Array[]): number {
  return Math.sqrt(dot(a, a));
}

function cosine(a: Float64Array[], b: Float64Array[]): number {
  return dot(a, b) / (norm(a) * norm(b) || 1);
}

