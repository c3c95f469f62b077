// SAM vision encoder forward at sam-vit-base size (random weights from initSamWeights, one 1024x1024 image).
//
//   node --import tsx bench/encoder.ts [--engine onnx|tfjs] [--reps N] [--workers W] [--layers] [--no-cache] [--json]
//   FEDSAM_BACKEND=cpu node --import tsx bench/encoder.ts ...      (backend as everywhere: initBackend())
//
// --engine onnx (the default where onnxruntime-node loads): the ONNX graph built from the same weights (graph
// cache in a temporary folder unless --graph-cache DIR), ORT's intra-op threads = cores. Prints graph build /
// session creation, the first image of the process, the steady images (median), CPU time and peak RSS.
// --ort-options JSON merges extra ORT session options (experiments: {"enableMemPattern": false} ...).
// --engine tfjs: the tfjs graph as before:
// Single thread: seconds per image (first image = cold: weights are transposed/packed into the FrozenWeightCache;
// later images reuse it). --layers also times one windowed and one global block alone.
// --workers W (default 2): W worker_threads, each with its own backend and weights (shared, read-only
// SharedArrayBuffers), each encoding its own image at the same time: images/s with all cores.
// Times are medians over reps; wall and process CPU time are both shown (other processes share this machine).
import * as tf from '@tensorflow/tfjs';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { initBackend } from '@fedsam/shared/backend';
import { samVitBaseConfig, type SamConfig } from '@fedsam/shared/config';
import { initSamWeights } from '@fedsam/shared/model/init';
import { FrozenWeightCache, type Weights } from '@fedsam/shared/model/ops';
import { visionEncoderNHWC, visionLayer } from '@fedsam/shared/model/visionEncoder';
import type { HostTensor } from '@fedsam/shared/safetensors';
import { median, tsWorker, withGlibcTunables } from './common.ts';
import { chooseEngine } from '@fedsam/shared/inference';
import { OnnxSamInference } from '@fedsam/shared/onnx/samOnnx';
import { setExtraSessionOptions } from '@fedsam/shared/onnx/runtime';
import { hashWeights } from '@fedsam/shared/checkpoint/hash';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The ONNX Runtime engine on the same weights: build/load, first image, steady images. */
async function onnxMain(args: Args): Promise<void> {
  const config = samVitBaseConfig();
  const log = (s: string) => { if (!args.json) console.log(s); };
  const extra = JSON.parse(args.ortOptions) as Record<string, unknown>;
  setExtraSessionOptions(extra);
  log(`engine onnx (${chooseEngine('onnx').reason}); sam-vit-base vision encoder, 1 image 1024x1024, random weights (seed ${SEED}); ORT options ${JSON.stringify(extra)}`);
  const weights = initSamWeights(config, SEED, { parts: ['vision_encoder'] });
  const dir = args.graphCache ?? await mkdtemp(join(tmpdir(), 'fedsam-bench-onnx-'));
  const inf = new OnnxSamInference({ config, weights: { host: () => weights, decoderVersion: () => [] }, visionHash: hashWeights(weights, 'vision_encoder.'), cacheDir: dir, warmUp: args.warmUp });
  const timedAsync = async <T>(f: () => Promise<T>): Promise<[T, Timing & { sys: number; faults: number }]> => {
    const c0 = process.cpuUsage();
    const f0 = process.resourceUsage().minorPageFault;
    const t0 = performance.now();
    const r = await f();
    const c = process.cpuUsage(c0);
    return [r, { wall: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6, sys: c.system / 1e6, faults: process.resourceUsage().minorPageFault - f0 }];
  };
  const [, tSession] = await timedAsync(() => inf.visionSession());
  log(`graph ${args.graphCache ? 'from ' + dir : 'built into ' + dir} + session${args.warmUp ? ' + warm-up run' : ''}: ${tSession.wall.toFixed(1)} s`);
  const S = config.vision.image_size;
  const times: (Timing & { sys: number; faults: number })[] = [];
  for (let r = 0; r < Math.max(2, args.reps); r++) {
    const px = new Float32Array(3 * S * S);
    for (let i = 0; i < px.length; i++) px[i] = Math.sin(i * 0.37 + r);
    const [, t] = await timedAsync(() => inf.embed({ data: px, shape: [1, 3, S, S] }));
    times.push(t);
    log(`image ${r + 1}: ${t.wall.toFixed(2)} s wall, ${t.cpu.toFixed(1)} s CPU (${t.sys.toFixed(1)} s system), ${t.faults} page faults, RSS ${(process.memoryUsage().rss / 2 ** 30).toFixed(2)} GB`);
  }
  await inf.dispose();
  if (!args.graphCache) await rm(dir, { recursive: true, force: true });
  const steady = times.slice(1);
  const peak = process.resourceUsage().maxRSS / 2 ** 20;
  const result = { engine: 'onnx', session: tSession, first: times[0], steady: median(steady.map((t) => t.wall)), steadyCpu: median(steady.map((t) => t.cpu)), peakRssGB: peak, options: extra, times };
  if (args.json) { console.log(JSON.stringify(result)); return; }
  console.log(`\n| onnx (ORT ${process.env.FEDSAM_ORT_THREADS ?? 'all'} threads) | s / image | CPU s / image |\n|---|---|---|`);
  console.log(`| session (graph ${args.graphCache ? 'cached' : 'built'}) | ${tSession.wall.toFixed(1)} | ${tSession.cpu.toFixed(1)} |`);
  console.log(`| first image of the process | ${times[0].wall.toFixed(2)} | ${times[0].cpu.toFixed(1)} |`);
  console.log(`| steady (median of ${steady.length}) | ${result.steady.toFixed(2)} | ${result.steadyCpu.toFixed(1)} |`);
  console.log(`first / steady ${(times[0].wall / result.steady).toFixed(2)}; peak RSS ${peak.toFixed(2)} GB`);
}

interface Args { reps: number; workers: number; layers: boolean; cache: boolean; json: boolean; engine: string; graphCache?: string; ortOptions: string; warmUp: boolean }
function readArgs(argv: string[]): Args {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      reps: { type: 'string', default: '2' },
      workers: { type: 'string', default: '2' },
      layers: { type: 'boolean', default: false },
      'no-cache': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      engine: { type: 'string' },
      'graph-cache': { type: 'string' },
      'ort-options': { type: 'string', default: '{}' },
      'warm-up': { type: 'boolean', default: false },
    },
  });
  return {
    reps: Number(v.reps), workers: Number(v.workers), layers: v.layers, cache: !v['no-cache'], json: v.json,
    engine: v.engine ?? chooseEngine().name, graphCache: v['graph-cache'], ortOptions: v['ort-options'], warmUp: v['warm-up'],
  };
}


const SEED = 1234;

/** Host weights of the vision encoder in SharedArrayBuffers (workers map them without copying). */
function sharedEncoderWeights(config: SamConfig): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const [name, t] of initSamWeights(config, SEED, { parts: ['vision_encoder'] })) {
    const sab = new SharedArrayBuffer(t.data.byteLength);
    const data = new Float32Array(sab);
    data.set(t.data as Float32Array);
    out.set(name, { dtype: 'float32', shape: t.shape, data });
  }
  return out;
}

function toDevice(host: Map<string, HostTensor>): Weights {
  const w: Weights = new Map();
  for (const [n, t] of host) w.set(n, tf.tensor(t.data as Float32Array, t.shape, 'float32'));
  return w;
}

function image(config: SamConfig, seed: number): tf.Tensor4D {
  const s = config.vision.image_size;
  return tf.randomNormal([1, 3, s, s], 0, 1, 'float32', seed) as tf.Tensor4D;
}

interface Timing { wall: number; cpu: number }
function timed<T>(f: () => T): [T, Timing] {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const r = f();
  const wall = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return [r, { wall, cpu: (c.user + c.system) / 1e6 }];
}

async function worker(): Promise<void> {
  const { host, reps, useCache } = workerData as { host: Map<string, HostTensor>; reps: number; useCache: boolean };
  await initBackend();
  const config = samVitBaseConfig();
  const weights = toDevice(host);
  const cache = useCache ? new FrozenWeightCache() : undefined;
  parentPort!.postMessage({ ready: true });
  parentPort!.on('message', (m: { go?: number; exit?: boolean }) => {
    if (m.exit) { cache?.dispose(); process.exit(0); }
    const times: Timing[] = [];
    for (let r = 0; r < reps; r++) {
      const px = image(config, (m.go ?? 0) * 100 + r);
      const [e, t] = timed(() => visionEncoderNHWC(weights, config, px, cache));
      e.dataSync();
      tf.dispose([e, px]);
      times.push(t);
    }
    parentPort!.postMessage({ times });
  });
}

async function main(): Promise<void> {
  const args = readArgs(process.argv.slice(2));
  if (args.engine === 'onnx') return onnxMain(args);
  const backend = await initBackend();
  const config = samVitBaseConfig();
  const log = (s: string) => { if (!args.json) console.log(s); };
  log(`backend ${backend.name} (${backend.reason}); sam-vit-base vision encoder, 1 image 1024x1024, random weights (seed ${SEED})`);
  const [host, tInit] = timed(() => sharedEncoderWeights(config));
  log(`initSamWeights(vision_encoder): ${tInit.wall.toFixed(2)} s`);
  const weights = toDevice(host);
  const cache = args.cache ? new FrozenWeightCache() : undefined;
  const result: Record<string, unknown> = { backend: backend.name, cache: args.cache };

  if (args.layers) {
    const x = tf.randomNormal([1, 64, 64, config.vision.hidden_size], 0, 1, 'float32', 5) as tf.Tensor4D;
    const rows: string[] = [];
    for (const [label, i] of [['windowed block (14x14 windows)', 0], ['global block (64x64)', 2]] as const) {
      const ts: Timing[] = [];
      for (let r = 0; r < Math.max(2, args.reps); r++) {
        const [y, t] = timed(() => visionLayer(weights, config, i, x, cache));
        y.dataSync();
        y.dispose();
        ts.push(t);
      }
      rows.push(`| ${label} | ${ts[0].wall.toFixed(2)} | ${median(ts.slice(1).map((t) => t.wall)).toFixed(2)} | ${median(ts.slice(1).map((t) => t.cpu)).toFixed(2)} |`);
      result[`layer${i}`] = ts;
    }
    x.dispose();
    log('\n| one block | first s | warm s (median) | warm CPU s |\n|---|---|---|---|\n' + rows.join('\n'));
  }

  const single: Timing[] = [];
  for (let r = 0; r < args.reps; r++) {
    const px = image(config, r);
    const [e, t] = timed(() => visionEncoderNHWC(weights, config, px, cache));
    e.dataSync();
    tf.dispose([e, px]);
    single.push(t);
    log(`image ${r + 1}: ${t.wall.toFixed(1)} s wall, ${t.cpu.toFixed(1)} s CPU`);
  }
  result.single = single;
  cache?.dispose();
  for (const t of weights.values()) t.dispose();

  let par: { wall: number; per: Timing[][] } | undefined;
  if (args.workers > 0) {
    const ws = Array.from({ length: args.workers }, () => tsWorker(import.meta.url, { host, reps: args.reps, useCache: args.cache }));
    await Promise.all(ws.map((w) => new Promise((res, rej) => { w.once('message', res); w.once('error', rej); })));
    const t0 = performance.now();
    const per = await Promise.all(ws.map((w, i) => new Promise<Timing[]>((res, rej) => {
      w.once('message', (m: { times: Timing[] }) => res(m.times));
      w.once('error', rej);
      w.postMessage({ go: i + 1 });
    })));
    const wall = (performance.now() - t0) / 1000;
    ws.forEach((w) => w.postMessage({ exit: true }));
    par = { wall, per };
    result.workers = { n: args.workers, wall, per };
  }

  const first = single[0];
  const warm = single.slice(1);
  const rows = [
    `| 1 thread, first image (cold cache) | ${first.wall.toFixed(1)} | ${first.cpu.toFixed(1)} | ${(1 / first.wall).toFixed(3)} |`,
  ];
  if (warm.length) rows.push(`| 1 thread, warm (median of ${warm.length}) | ${median(warm.map((t) => t.wall)).toFixed(1)} | ${median(warm.map((t) => t.cpu)).toFixed(1)} | ${(1 / median(warm.map((t) => t.wall))).toFixed(3)} |`);
  if (par) {
    const n = args.workers * args.reps;
    const perImg = par.per.flat();
    rows.push(`| ${args.workers} workers x ${args.reps} images, concurrent | ${median(perImg.map((t) => t.wall)).toFixed(1)} per image | ${median(perImg.map((t) => t.cpu)).toFixed(1)} | ${(n / par.wall).toFixed(3)} |`);
  }
  rows.push('| PyTorch 1.13 CPU, 2 threads, jemalloc (peer) | 5.3 | | 0.189 |');
  rows.push('| PyTorch 1.13 CPU, 2 threads, default allocator (peer) | 13.0 | | 0.077 |');
  if (args.json) console.log(JSON.stringify(result));
  else console.log(`\n| ${backend.name} | s / image | CPU s / image | images / s |\n|---|---|---|---|\n${rows.join('\n')}`);
}

if (isMainThread) { if (await withGlibcTunables(fileURLToPath(import.meta.url))) await main(); }
else await worker();
