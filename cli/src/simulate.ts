// What `fedsam simulate` runs: the aggregator and N site clients on loopback (real gRPC), on synthetic data by default, with a
// per-round table; --compare adds the local-only and centralized baselines on the same split.
import { mkdir, readdir, readlink, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { loadModel } from '@fedsam/shared/model/presets';
import { renderTable } from '@fedsam/shared/table';
import type { HostTensor } from '@fedsam/shared/safetensors';
import { logger } from '@fedsam/shared/log';
import { StrategyConfigSchema, fedAdamEta, type StrategyName, type StrategyConfigInput } from '@fedsam/server/strategy/config';
import { FitSchema, ServerConfigSchema } from '@fedsam/server/config';
import { reportRow, type CompareReport } from './compareReport.ts';
import { synthesize } from '@fedsam/client/data/synth';
import { prepareSite, type Site } from '@fedsam/client/engine/site';
import { decoderToHost, setDecoderFromHost } from '@fedsam/client/engine/decoderWeights';
import { SiteWorkerEngine } from '@fedsam/client/engine/siteWorkerEngine';
import { compareBaselines } from '@fedsam/client/local/baselines';
import { saveModelFolder } from '@fedsam/client/modelFolder';
import { runSimulation, type SimulationRound } from './simulation.ts';
import { simulateConsole } from './simulateConsole.ts';
import { describeBoxJitter, type BoxJitter } from '@fedsam/shared/train/boxJitter';
import { boxCropFactor, modelBoxCrop, type BoxCrop } from '@fedsam/shared/boxCrop';

export interface SimulateOptions {
  sites: number;
  rounds: number;
  data?: string;
  nonIid?: boolean;
  model?: string;
  epochs: number;
  lr?: number;
  batchSize: number;
  strategy: StrategyName;
  proximalMu?: number;
  /** Point prompts per object in local training: [positive, negative]. */
  points?: number[];
  seed: number;
  /** Seed of local training alone (batch order, box noise); default: seed. The data and split stay seed's. */
  trainSeed?: number;
  imagesPerSite: number;
  valSplit: number;
  out: string;
  history?: string;
  cacheDir?: string;
  compare?: boolean;
  /** With compare: write the comparison as JSON here (compareReport.ts). */
  report?: string;
  /** Synthetic image size in pixels. */
  imageSize?: number;
  /** fit.optimizer_state (default: the server config's). */
  optimizerState?: 'keep' | 'fresh';
  warmupSteps?: number;
  lrDecay?: number;
  /** FedAvgM server momentum. */
  serverMomentum?: number;
  /** FedAdam / FedYogi server learning rate. */
  eta?: number;
  /** server final_average_rounds (default: the server config's). */
  finalAverageRounds?: number;
  /** fit.ditto_lambda: each site also trains a Ditto personal model. */
  dittoLambda?: number;
  /** Box-prompt noise in local training (every row); default: the model's own. */
  boxJitter?: BoxJitter;
  /** Every site segments each object in a crop of this many box sides (shared/src/boxCrop.ts); default: the whole image. */
  boxCrop?: BoxCrop;
  quiet?: boolean;
  /** HOST:PORT of the live page, or false for none. */
  dashboard?: string | false;
}

async function isDataset(p: string): Promise<boolean> {
  if (!(await stat(p)).isDirectory()) return true; // a manifest file
  const sub = await readdir(p);
  return sub.includes('images') || sub.includes('imagesTr') || sub.some((f) => /^manifest\.(csv|jsonl)$/.test(f));
}

/** The site datasets in `data`, by name: its sub-folders that hold a dataset, symbolic links to such folders included. */
export async function siteFolders(data: string, n: number): Promise<string[]> {
  const entries = (await readdir(data, { withFileTypes: true }))
    .filter((e) => (e.isDirectory() || e.isSymbolicLink()) && !e.name.startsWith('.')).sort((a, b) => (a.name < b.name ? -1 : 1));
  const sites = [];
  for (const e of entries) {
    const p = join(data, e.name);
    const target = e.isSymbolicLink() ? await stat(p).catch(() => undefined) : e;
    if (!target) throw new Error(`${p} is a symbolic link to nothing (${await readlink(p)}): fix or remove it`);
    if (target.isDirectory() && (await isDataset(p))) sites.push(p);
  }
  if (!sites.length) throw new Error(`${data} has no site folders (each a dataset: images/ + masks/, a manifest, or imagesTr/ + labelsTr/)`);
  if (sites.length < n) throw new Error(`${data} has ${sites.length} site folders but --sites ${n} was asked`);
  return sites.slice(0, n);
}

/** A private copy of weights an event hands out (the client reuses its buffers). */
function cloneWeights(w: Map<string, HostTensor>): Map<string, HostTensor> {
  return new Map([...w].map(([k, t]) => [k, { ...t, shape: [...t.shape], data: (t.data as Float32Array).slice() }]));
}

const f3 = (v: number | null | undefined) => (v === null || v === undefined ? undefined : v);

export async function simulate(o: SimulateOptions, print: (s: string) => void = (s) => process.stdout.write(s + '\n')) {
  const t0 = performance.now();
  const out = resolve(o.out);
  await mkdir(out, { recursive: true });
  let data = o.data ? resolve(o.data) : join(out, 'data');
  if (!o.data) {
    const s = await synthesize({ out: data, sites: o.sites, nonIid: !!o.nonIid, seed: o.seed, imagesPerSite: o.imagesPerSite, size: o.imageSize });
    print(`synthetic data: ${o.sites} ${o.nonIid ? 'non-IID' : 'IID'} sites x ${o.imagesPerSite} images of ${s.size} px in ${data} (box-baseline Dice ${s.boxDice.toFixed(3)})`);
  }
  // A folder of site folders (site-1/, site-2/, ...) gives one site each; a single dataset is split across sites.
  const single = await isDataset(data);
  const folders = single ? Array.from({ length: o.sites }, () => data) : await siteFolders(data, o.sites);
  if (single) print(`splitting ${data} across ${o.sites} sites by group (${o.nonIid ? 'non-IID: by object size' : 'IID'})`);
  const names = folders.map((_, i) => `site-${i + 1}`);
  // Each site in its own worker thread (own tfjs backend, model and cache): several sites use several cores.
  const siteOpts = (i: number) => ({ model: o.model, data: folders[i], valSplit: o.valSplit, seed: o.seed, cacheDir: o.cacheDir, boxCrop: o.boxCrop,
    partition: single ? { sites: o.sites, index: i, seed: o.seed, nonIid: !!o.nonIid } : undefined });
  const engines = await Promise.all(folders.map((_, i) => SiteWorkerEngine.start(siteOpts(i))));
  const base = await loadModel(o.model);
  const lr = o.lr ?? base.recommendedLr;
  const boxJitter = o.boxJitter ?? base.recommendedBoxJitter;
  const trainSeed = o.trainSeed ?? o.seed;
  const boxCrop = boxCropFactor(o.boxCrop ?? modelBoxCrop(base.processor.config));
  const strategy: StrategyConfigInput = o.strategy === 'fedprox' && o.proximalMu !== undefined ? { name: 'fedprox', proximal_mu: o.proximalMu }
    : o.strategy === 'fedavgm' && o.serverMomentum !== undefined ? { name: 'fedavgm', server_momentum: o.serverMomentum }
    : (o.strategy === 'fedadam' || o.strategy === 'fedyogi') && o.eta !== undefined ? { name: o.strategy, eta: o.eta } : { name: o.strategy };
  const fitDefaults = FitSchema.parse({});
  const optimizerState = o.optimizerState ?? fitDefaults.optimizer_state;
  const warmupSteps = o.warmupSteps ?? fitDefaults.warmup_steps;
  const initialDecoder = decoderToHost(base); // every site starts from the same base model
  // The coordinator averages over the rounds there are (server/src/coordinator.ts tailAverage).
  const finalAverage = Math.min(o.finalAverageRounds ?? ServerConfigSchema.parse({}).final_average_rounds, o.rounds);
  const strategyNote = o.strategy === 'fedavgm' ? ` (server momentum ${(StrategyConfigSchema.parse(strategy) as { server_momentum: number }).server_momentum})`
    : o.strategy === 'fedadam' ? ` (server lr ${fedAdamEta(o.eta, lr)})` : '';
  const lrDecay = o.lrDecay ?? fitDefaults.lr_decay;
  const training = [
    `${o.rounds} round${o.rounds === 1 ? '' : 's'} x ${o.epochs} local epoch(s)`,
    `lr ${lr}${warmupSteps ? ` (warm-up ${warmupSteps} steps)` : ''}${lrDecay !== 1 ? ` x ${lrDecay}^(round-1)` : ''}`,
    `batch ${o.batchSize}`,
    trainSeed !== o.seed && `training seed ${trainSeed}`,
    describeBoxJitter(boxJitter),
    boxCrop !== undefined ? `box crops of ${boxCrop} box sides` : 'whole images',
    `site optimizer state ${optimizerState}`,
    o.points && `points ${o.points[0]}+/${o.points[1]}-`,
  ];
  print([
    `model ${base.source}`,
    `strategy ${o.strategy}${strategyNote}`,
    training.filter(Boolean).join(', '),
    finalAverage > 1 && `the last round's global is the mean of the last ${finalAverage} rounds'`,
    o.dittoLambda !== undefined && `Ditto personal models, λ ${o.dittoLambda}`,
    `sites in ${engines.length} worker threads`,
  ].filter(Boolean).join('; '));
  for (let i = 0; i < engines.length; i++) print(`  ${names[i]}: ${engines[i].trainCount} training / ${engines[i].valCount} validation objects (${folders[i]})`);
  const boxBaselines: Record<string, number> = {};
  let bn = 0, bs = 0;
  engines.forEach((e, i) => {
    boxBaselines[names[i]] = e.boxDice;
    bs += e.boxDice * e.valCount;
    bn += e.valCount;
  });
  const boxMean = bs / bn;
  const engineCounts = engines.map((e) => e.valCount);
  const headers = ['round', ...names.map((n) => `${n} Dice`), 'weighted mean Dice', 'box baseline', 'elapsed s'];
  let printedHeader = false;
  let result;
  const personalized: Record<string, number> = {};
  const live = simulateConsole(names);
  // Each site's own model after the last round's local training (before averaging): federated + personalized, the
  // same epoch budget as the global model.
  const lastLocal = new Map<string, { round: number; weights: Map<string, HostTensor> }>();
  const elapsedAt = new Map<number, number>();
  try {
    result = await runSimulation({
      sites: engines.map((e, i) => ({ name: names[i], engineFactory: () => e })),
      rounds: o.rounds,
      strategy,
      fit: { epochs: o.epochs, lr, batch_size: o.batchSize, seed: trainSeed, points_positive: o.points?.[0] ?? 0, points_negative: o.points?.[1] ?? 0,
        optimizer_state: o.optimizerState, warmup_steps: o.warmupSteps, lr_decay: o.lrDecay, box_jitter: boxJitter, ...(o.dittoLambda !== undefined ? { ditto_lambda: o.dittoLambda } : {}) },
      initialDecoder,
      samConfig: base.config,
      baseModelHash: base.baseModelHash,
      outDir: join(out, 'server'),
      logger: logger('simulate'),
      server: { dashboard: o.dashboard ? { listen: o.dashboard } : null, ...(o.finalAverageRounds ? { final_average_rounds: o.finalAverageRounds } : {}) },
      onStarted: (server) => {
        if (server.dashboardUrl) print(`dashboard: ${server.dashboardUrl}`);
        engines.forEach((e, i) => {
          e.onProgress = (p) => server.view.progress(names[i]!, p.done / p.total, `epoch ${p.epoch}/${p.epochs}, loss ${p.loss.toFixed(3)}`);
        });
        live.follow(server.view, { headers, boxMean, t0: performance.timeOrigin + t0, elapsedAt });
      },
      onClientEvent: o.compare ? (site, e) => {
        if (e.type === 'fit_done') lastLocal.set(site, { round: e.round, weights: cloneWeights(e.weights) });
      } : undefined,
      onRound: (r: SimulationRound) => {
        elapsedAt.set(r.round, (performance.now() - t0) / 1000);
        // on a terminal the table is drawn live (with the sites' progress) and stays on the screen at the end
        if (live.live && process.stdout.isTTY) return;
        const row = [r.round, ...names.map((n) => f3(r.sites[n]?.dice)), f3(r.mean_dice), boxMean, elapsedAt.get(r.round)];
        const table = renderTable(headers, [row]).split('\n');
        if (!printedHeader) { print(table[0]); print(table[1]); printedHeader = true; }
        print(table[2]);
      },
    });
    if (o.compare) {
      for (let i = 0; i < engines.length; i++) {
        const own = lastLocal.get(names[i]!);
        if (own?.round === o.rounds) personalized[names[i]!] = (await engines[i]!.evaluate(own.weights)).metrics.dice!;
      }
    }
  } finally {
    live.close();
    await Promise.all(engines.map((e) => e.close()));
  }
  // Final global model: frozen encoders + global decoder, as an HF SamModel folder.
  setDecoderFromHost(base, result.finalWeights);
  const finalDir = join(out, 'final-model');
  await saveModelFolder(finalDir, base);
  const history = result.history.map((r) => ({ round: r.round, mean_dice: r.mean_dice, sites: r.sites }));
  // Ditto: each site's personal model as the last evaluation measured it
  const lastEval = history[history.length - 1];
  const ditto = o.dittoLambda !== undefined && lastEval && names.every((n) => lastEval.sites[n]?.personal_dice !== undefined)
    ? Object.fromEntries(names.map((n) => [n, lastEval.sites[n]!.personal_dice!])) : undefined;
  if (ditto && !o.compare) {
    const counts = Object.fromEntries(names.map((n) => [n, lastEval!.sites[n]!.num_examples]));
    print(`Ditto personal models after round ${lastEval!.round}: ${names.map((n) => `${n} ${ditto[n]!.toFixed(3)}`).join(', ')}; weighted mean ${reportRow(names, ditto, counts).mean_dice.toFixed(3)}`);
  }
  if (o.history) {
    await writeFile(resolve(o.history), JSON.stringify(history, null, 2) + '\n');
    print(`history: ${resolve(o.history)}`);
  }
  print(`final global model: ${finalDir} (HF SamModel folder); server state and per-round decoders: ${join(out, 'server')}`);
  print(`simulation took ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  let comparison;
  if (o.compare) {
    // Every baseline trains the one base model in turn (each run starts from the initial decoder).
    const sites: Site[] = [];
    for (let i = 0; i < folders.length; i++) sites.push(await prepareSite({ ...siteOpts(i), model: base, quiet: true }));
    comparison = await compareBaselines({ ...o, seed: trainSeed, boxJitter }, base, initialDecoder, sites, names, lr, print);
  }
  base.model.dispose();
  if (comparison) {
    const last = history[history.length - 1];
    const counts = Object.fromEntries(names.map((n, i) => [n, engineCounts[i]!]));
    const hasPersonalized = names.every((n) => personalized[n] !== undefined);
    print(renderTable(['training', ...names.map((n) => `${n} Dice`), 'weighted mean Dice'], [
      ['box baseline', ...names.map((n) => boxBaselines[n]), boxMean],
      ['local-only (each site alone)', ...names.map((n) => comparison.local[n]), comparison.localMean],
      [`federated (${o.strategy}, ${o.rounds} rounds)`, ...names.map((n) => f3(last?.sites[n]?.dice)), f3(last?.mean_dice)],
      ...(hasPersonalized ? [['federated, each site\'s last local model', ...names.map((n) => personalized[n]), reportRow(names, personalized, counts).mean_dice]] : []),
      ...(ditto ? [[`federated + Ditto personal models (λ ${o.dittoLambda})`, ...names.map((n) => ditto[n]), reportRow(names, ditto, counts).mean_dice]] : []),
      ['centralized (all data pooled)', ...names.map((n) => comparison.central[n]), comparison.centralMean],
    ]));
    await writeFile(join(out, 'comparison.json'), JSON.stringify({ boxBaseline: boxBaselines, boxMean, ...comparison, federated: last }, null, 2) + '\n');
    if (o.report) {
      const fed = Object.fromEntries(names.map((n) => [n, last?.sites[n]?.dice ?? NaN]));
      const report: CompareReport = {
        box_baseline: reportRow(names, boxBaselines, counts),
        local_only: reportRow(names, comparison.local, counts),
        federated: reportRow(names, fed, Object.fromEntries(names.map((n) => [n, last?.sites[n]?.num_examples ?? counts[n]!]))),
        centralized: reportRow(names, comparison.central, counts),
        ...(hasPersonalized ? { federated_personalized: reportRow(names, personalized, counts) } : {}),
        ...(ditto ? { federated_ditto: reportRow(names, ditto, counts) } : {}),
      };
      await writeFile(resolve(o.report), JSON.stringify(report, null, 2) + '\n');
      print(`report: ${resolve(o.report)}`);
    }
  }
  return { history, comparison };
}
