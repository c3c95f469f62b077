// Aggregation of K sam-vit-base mask-decoder updates (4,058,340 float32 parameters in the HF decoder shapes):
// ms per aggregation and peak RSS growth, next to Flower's aggregate() on this machine.
//
//   node --import tsx bench/aggregate.ts            all K, table
//   node --import tsx bench/aggregate.ts --json     machine-readable
//
// Each (strategy, K) runs in a fresh child process so that its peak RSS is its own. FedAvg is measured as the
// server runs it: updates arrive one at a time, each received into a buffer from the fold arena (the server's
// receive buffers) that the aggregator holds until it has summed it; time = all K adds + finish. Median / trimmed
// mean need all K updates at once (K float32 copies are part of their cost).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { HostTensor } from '@fedsam/shared/safetensors';
import { createStrategy, FLOWER_FEDADAM_ETA, type Strategy, type StrategyConfigInput } from '@fedsam/server/strategy/index';
import { cloneTensors } from '@fedsam/server/strategy/aggregate';
import { FOLD_BATCH } from '@fedsam/server/strategy/weightedSum';
import { decodePayload, encodeTransfer } from '@fedsam/shared/transfer/codec';
import { lcgWeights, NODE_HEAP_FLAG, vitBaseDecoderShapes } from './common.ts';

const KS = [2, 8, 32];
const FLOWER = { 2: { ms: 9.9, mb: 47 }, 8: { ms: 22.0, mb: 140 }, 32: { ms: 69.6, mb: 512 } } as Record<number, { ms: number; mb: number }>;
const STRATEGIES: Array<{ label: string; cfg: StrategyConfigInput }> = [
  { label: 'fedavg', cfg: { name: 'fedavg' } },
  { label: 'fedadam', cfg: { name: 'fedadam', eta: FLOWER_FEDADAM_ETA } },
  { label: 'fedavgm', cfg: { name: 'fedavgm', server_momentum: 0.9 } },
  { label: 'median', cfg: { name: 'median' } },
  { label: 'trimmed_mean', cfg: { name: 'trimmed_mean', beta: 0.2 } },
];



/** Turn `buf` into update k (cheap, outside the timed region). */
function fillUpdate(buf: Map<string, HostTensor>, base: Map<string, HostTensor>, k: number): void {
  const off = (k + 1) * 1e-3;
  for (const [name, t] of buf) {
    const b = base.get(name)!.data as Float32Array;
    const d = t.data as Float32Array;
    for (let i = 0; i < d.length; i++) d[i] = b[i]! + off * ((i % 7) - 3);
  }
}

/**
 * Receive buffers as the server has them, from the strategy's aggregator: streaming strategies get arena blocks
 * (given back by `release`), the others ordinary buffers, all kept. Two exist before the measurement starts (two
 * uploads in flight).
 */
function receiver(global: Map<string, HostTensor>, strategy: Strategy) {
  const enc = encodeTransfer(global);
  const aggregator = strategy.aggregator;
  const keeps = aggregator.holding === 'kept';
  const take = () => {
    const payload = keeps ? new Uint8Array(enc.payload.length) : aggregator.takeReceiveBuffer(enc.payload.length);
    payload.fill(0); // touched, like a received buffer
    return payload;
  };
  if (!keeps) for (const b of [take(), take()]) aggregator.giveReceiveBuffer(b);
  return () => {
    const payload = take();
    return { weights: decodePayload(enc.manifest, payload), release: keeps ? undefined : () => aggregator.giveReceiveBuffer(payload) };
  };
}


interface Measurement {
  strategy: string;
  k: number;
  params: number;
  ms: number;
  foldMsPerUpdate: number;
  /** Time after the last update arrived: its fold + finish (what delays the next round). */
  criticalMs: number;
  /** aggregateFit(): taking the round's output buffer (the recycled one after the first round). */
  beginMs: number;
  finishMs: number;
  rssGrowthMB: number;
}

function measureOne(strategyLabel: string, k: number): Measurement {
  const spec = STRATEGIES.find((s) => s.label === strategyLabel)!;
  const shapes = vitBaseDecoderShapes();
  const params = [...shapes.values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
  // warm up the JIT (as a long-running server is after its first round) on a small layout
  {
    const small = new Map([['mask_decoder.w', [4096]], ['mask_decoder.b', [16]]]);
    const g = lcgWeights(small, 1);
    for (let r = 0; r < 20; r++) {
      const agg = createStrategy(spec.cfg).aggregateFit(r + 1, g);
      for (let i = 0; i < Math.max(3, k); i++) agg.add({ site: `w${i}`, weights: cloneTensors(g), numExamples: 1 + i, weight: 1 + i, metrics: {} });
      agg.finish();
    }
  }
  const global = lcgWeights(shapes, 42);
  const strategy = createStrategy(spec.cfg);
  const keeps = strategy.aggregator.holding === 'kept';
  const receive = receiver(global, strategy);
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  // Memory: RSS sampled after every step, from here (the global and the receive buffers exist; everything the
  // strategy allocates, including the accumulator it keeps between rounds, counts).
  const rss0 = process.memoryUsage().rss;
  let peak = rss0;
  const sample = () => void (peak = Math.max(peak, process.memoryUsage().rss));
  // One round first: a server has done one before every round but its first, and FedAvg reuses the buffers it
  // used (arena blocks for held updates, the float64 accumulator, the output). Same K for FedAvg; two updates for
  // the strategies that keep every update (they reuse nothing). The second round is timed.
  {
    const warm = strategy.aggregateFit(1, global);
    for (let i = 0; i < (keeps ? 2 : k); i++) {
      const r = receive();
      fillUpdate(r.weights, global, i);
      warm.add({ site: `warm${i}`, weights: r.weights, numExamples: 1 + i, weight: 1 + i, metrics: {}, release: r.release });
      sample();
    }
    const previous = warm.finish().weights;
    sample();
    // the coordinator replaces that global with the next one and hands it back, as every round after the second
    strategy.aggregator.recycle(previous);
  }
  gc?.(); // the warm-up round's output is garbage now
  let timed = 0;
  let foldTime = 0;
  let lastFold = 0;
  let t = performance.now();
  const agg = strategy.aggregateFit(2, global);
  const beginMs = performance.now() - t;
  timed += beginMs;
  for (let i = 0; i < k; i++) {
    // robust strategies keep every update: those K buffers are created as they arrive, inside the measurement
    const r = receive();
    fillUpdate(r.weights, global, i);
    t = performance.now();
    agg.add({ site: `s${i}`, weights: r.weights, numExamples: 10 + i, weight: 10 + i, metrics: {}, release: r.release });
    const dt = performance.now() - t;
    sample();
    timed += dt;
    foldTime += dt;
    lastFold = dt;
  }
  t = performance.now();
  const out = agg.finish().weights;
  const finishMs = performance.now() - t;
  sample();
  timed += finishMs;
  if (out.size !== shapes.size) throw new Error('bad output');
  return { strategy: strategyLabel, k, params, ms: timed, foldMsPerUpdate: foldTime / k, criticalMs: lastFold + finishMs, beginMs, finishMs, rssGrowthMB: (peak - rss0) / 2 ** 20 };
}

function main(): void {
  const { values: args } = parseArgs({
    options: { json: { type: 'boolean', default: false }, 'fedavg-only': { type: 'boolean', default: false }, one: { type: 'string' } },
  });
  if (args.one !== undefined) {
    // a child: one strategy:K measurement
    const [strategy, k] = args.one.split(':');
    process.stdout.write(JSON.stringify(measureOne(strategy!, Number(k))) + '\n');
    return;
  }
  const json = args.json;
  const only = args['fedavg-only'] ? ['fedavg'] : STRATEGIES.map((s) => s.label);
  const self = fileURLToPath(import.meta.url);
  const results: Measurement[] = [];
  for (const strategy of only) {
    for (const k of KS) {
      const r = spawnSync(process.execPath, ['--expose-gc', NODE_HEAP_FLAG, '--import', 'tsx', self, '--one', `${strategy}:${k}`], { encoding: 'utf8', maxBuffer: 1 << 20 });
      if (r.status !== 0) throw new Error(`bench child failed (${strategy} K=${k}): ${r.stderr}`);
      results.push(JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Measurement);
    }
  }
  if (json) {
    process.stdout.write(JSON.stringify(results, null, 2) + '\n');
    return;
  }
  const params = results[0]!.params;
  const lines = [
    `Aggregation of K sam-vit-base mask-decoder updates (${params.toLocaleString('en-US')} float32 parameters, HF decoder shapes)`,
    `FedSAM: updates received into fold-arena buffers and held until ${FOLD_BATCH} wait, then summed into the float64`,
    'accumulator in one WebAssembly SIMD pass; finish() sums the last held ones in the pass that writes the mean.',
    'Timed: the second round of one strategy.',
    '"total" = K adds + finish; "after last" = last add + finish (what delays the next round; earlier adds overlap the',
    'uploads). RSS growth: peak over both rounds of sampled RSS, from before the strategy existed.',
    "Flower: aggregate() on this machine, which starts after all K updates are in memory.",
    '',
    '| strategy     |  K | total ms | fold ms/update | after last ms | peak RSS growth | Flower ms | Flower RSS growth |',
    '|--------------|---:|---------:|---------------:|--------------:|----------------:|----------:|------------------:|',
  ];
  for (const r of results) {
    const f = FLOWER[r.k]!;
    const flower = r.strategy === 'fedavg';
    lines.push(
      `| ${r.strategy.padEnd(12)} | ${String(r.k).padStart(2)} | ${r.ms.toFixed(1).padStart(8)} | ${r.foldMsPerUpdate.toFixed(1).padStart(14)} | ` +
        `${r.criticalMs.toFixed(1).padStart(13)} | ${`+${r.rssGrowthMB.toFixed(0)} MB`.padStart(15)} | ${(flower ? f.ms.toFixed(1) : '').padStart(9)} | ${(flower ? `+${f.mb} MB` : '').padStart(17)} |`,
    );
  }
  process.stdout.write(lines.join('\n') + '\n');
}

main();
