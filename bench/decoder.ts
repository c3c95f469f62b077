// Prompt encoder + mask decoder at sam-vit-base size, from given image embeddings [B, 64, 64, 256] with one box
// per image (the fine-tuning recipe: multimask off, DiceCE on the 256x256 low-res logits, Adam).
//
//   node --import tsx bench/decoder.ts [--engine onnx|tfjs] [--reps N] [--batches 1,2,4] [--no-parallel] [--json]
//
// --engine onnx (the default where onnxruntime-node loads): the forward only, on the ONNX decoder graph built from
// the same weights (training runs on tfjs: use --engine tfjs for the backward and step rows). PyTorch's forward for
// the same window: bash bench/peer-decoder-forward.sh 1 2 4.
//   FEDSAM_BACKEND=cpu node --import tsx bench/decoder.ts ...
//
// forward          = SamModel.decode (prompt encoder + mask decoder, spatial masks + IoU), read back
// forward+backward = lossAndGrads (loss + gradients of the 120 trainable decoder tensors)
// step             = trainStep (forward + backward + Adam update of the weights)
// data-parallel    = the step with the batch split between this thread and one worker_thread (each computes the
//                    gradients of its half on its own backend; weights out / gradients back as transferred
//                    ArrayBuffers; averaged here, one Adam step here).
// samples/s = B / median wall time per batch (first run of each row is a warm-up and not counted). Process CPU time
// is shown too: other processes share this 2-core machine.
import * as tf from '@tensorflow/tfjs';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { initBackend } from '@fedsam/shared/backend';
import { samVitBaseConfig } from '@fedsam/shared/config';
import { initSamWeights } from '@fedsam/shared/model/init';
import { SamModel } from '@fedsam/shared/model/sam';
import { lossAndGrads, trainStep, trainableDecoderNames, type TrainBatch } from '@fedsam/shared/train/step';
import { adamInit, adamStep, adamDispose, ADAM_DEFAULTS } from '@fedsam/shared/train/adam';
import { median, tsWorker, withGlibcTunables } from './common.ts';
import { chooseEngine, hostWeightSource } from '@fedsam/shared/inference';
import { OnnxSamInference } from '@fedsam/shared/onnx/samOnnx';

interface Args { reps: number; batches: number[]; parallel: boolean; json: boolean; engine: string }
function readArgs(argv: string[]): Args {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      reps: { type: 'string', default: '5' },
      batches: { type: 'string', default: '1,2,4' },
      'no-parallel': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      engine: { type: 'string' },
    },
  });
  return { reps: Number(v.reps), batches: v.batches.split(',').map(Number), parallel: !v['no-parallel'], json: v.json, engine: v.engine ?? chooseEngine().name };
}


const SEED = 4321;

function makeModel(): SamModel {
  const config = samVitBaseConfig();
  return SamModel.fromHost(config, initSamWeights(config, SEED, { parts: ['prompt_encoder', 'mask_decoder', 'shared_image_embedding'] }));
}

/** B images: N(0,1) embeddings, one box each, an elliptic 0/1 target inside the box (256x256). */
function makeBatch(B: number): TrainBatch {
  const boxes: number[][][] = [];
  const target = new Float32Array(B * 256 * 256);
  for (let b = 0; b < B; b++) {
    const x1 = 150 + 40 * b, y1 = 250 - 30 * b, x2 = x1 + 500, y2 = y1 + 420;
    boxes.push([[x1, y1, x2, y2]]);
    const cx = (x1 + x2) / 8, cy = (y1 + y2) / 8, rx = (x2 - x1) / 8 / 2, ry = (y2 - y1) / 8 / 2;
    for (let y = 0; y < 256; y++) for (let x = 0; x < 256; x++) {
      if (((x + 0.5 - cx) / rx) ** 2 + ((y + 0.5 - cy) / ry) ** 2 <= 1) target[b * 65536 + y * 256 + x] = 1;
    }
  }
  return {
    embeddingsNHWC: tf.randomNormal([B, 64, 64, 256], 0, 1, 'float32', SEED + B) as tf.Tensor4D,
    boxes: tf.tensor3d(boxes, [B, 1, 4]),
    target: tf.tensor4d(target, [B, 1, 256, 256]),
  };
}

function subBatch(batch: TrainBatch, start: number, end: number): TrainBatch {
  return {
    embeddingsNHWC: tf.slice(batch.embeddingsNHWC, start, end - start),
    boxes: tf.slice(batch.boxes, start, end - start),
    target: tf.slice(batch.target, start, end - start),
  };
}

function flatten(ts: tf.Tensor[]): Float32Array {
  const out = new Float32Array(ts.reduce((s, t) => s + t.size, 0));
  let o = 0;
  for (const t of ts) { out.set(t.dataSync() as Float32Array, o); o += t.size; }
  return out;
}

function unflatten(flat: Float32Array, shapes: number[][]): tf.Tensor[] {
  let o = 0;
  return shapes.map((s) => { const n = s.reduce((a, b) => a * b, 1); const t = tf.tensor(flat.subarray(o, o + n), s, 'float32'); o += n; return t; });
}

interface Timing { wall: number; cpu: number }
function timed(f: () => void): Timing {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  f();
  const c = process.cpuUsage(c0);
  return { wall: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 };
}

// ---------------------------------------------------------------------------------------------------------------
// worker: gradients of a slice of the batch with the weights it is sent

async function worker(): Promise<void> {
  const { B } = workerData as { B: number };
  await initBackend();
  const model = makeModel();
  const names = trainableDecoderNames(model.decoderParameterNames(), model.config.decoder.num_multimask_outputs);
  const batch = makeBatch(B);
  parentPort!.postMessage({ ready: true });
  parentPort!.on('message', (m: { params?: Float32Array; start: number; end: number; exit?: boolean }) => {
    if (m.exit) process.exit(0);
    const shapes = names.map((n) => model.weights.get(n)!.shape);
    const fresh = unflatten(m.params!, shapes);
    names.forEach((n, i) => { model.weights.get(n)!.dispose(); model.weights.set(n, fresh[i]); });
    const sub = subBatch(batch, m.start, m.end);
    const { parts, grads } = lossAndGrads(model, sub, names);
    const flat = flatten(names.map((n) => grads.get(n)!));
    const scal = [parts.loss, parts.dice, parts.bce].map((t) => t.dataSync()[0]);
    tf.dispose([parts.loss, parts.dice, parts.bce, ...grads.values(), sub.embeddingsNHWC, sub.boxes, sub.target]);
    parentPort!.postMessage({ grads: flat, scal }, [flat.buffer as ArrayBuffer]);
  });
}

// ---------------------------------------------------------------------------------------------------------------

/** The forward on ONNX Runtime: same weights and batches, host arrays in and out. */
async function onnxMain(args: Args): Promise<void> {
  const config = samVitBaseConfig();
  const log = (s: string) => { if (!args.json) console.log(s); };
  log(`engine onnx (${chooseEngine('onnx').reason}); sam-vit-base prompt encoder + mask decoder forward, random weights (seed ${SEED}), ${args.reps} timed reps + 1 warm-up per row`);
  const weights = initSamWeights(config, SEED, { parts: ['prompt_encoder', 'mask_decoder', 'shared_image_embedding'] });
  const inf = new OnnxSamInference({ config, weights: hostWeightSource(weights), cacheDir: null });
  await initBackend();
  const rows: string[] = [];
  const out: Record<string, unknown>[] = [];
  for (const B of args.batches) {
    const batch = makeBatch(B);
    const inp = {
      embeddingsNHWC: { data: batch.embeddingsNHWC.dataSync() as Float32Array, shape: [...batch.embeddingsNHWC.shape] },
      inputBoxes: { data: batch.boxes.dataSync() as Float32Array, shape: [...batch.boxes.shape] },
      multimask: false,
    };
    tf.dispose([batch.embeddingsNHWC, batch.boxes, batch.target]);
    const [, tFirst] = await timedAsync(() => inf.decode(inp)); // graph build + session + first run
    const t: Timing[] = [];
    for (let r = 0; r < args.reps; r++) t.push((await timedAsync(() => inf.decode(inp)))[1]);
    const w = median(t.map((x) => x.wall));
    log(`  B=${B} forward: ${w.toFixed(4)} s/batch, ${(B / w).toFixed(2)} samples/s (CPU ${median(t.map((x) => x.cpu)).toFixed(3)} s; first call with graph build ${tFirst.wall.toFixed(2)} s)`);
    rows.push(`| ${B} | forward | ${w.toFixed(4)} | ${(B / w).toFixed(2)} |`);
    out.push({ B, median: w, samplesPerS: B / w, first: tFirst.wall });
  }
  await inf.dispose();
  if (args.json) console.log(JSON.stringify({ engine: 'onnx', rows: out }));
  else console.log(`\n| B | onnx | s / batch | samples / s |\n|---|---|---|---|\n${rows.join('\n')}`);
}

async function timedAsync<T>(f: () => Promise<T>): Promise<[T, Timing]> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const r = await f();
  const c = process.cpuUsage(c0);
  return [r, { wall: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 }];
}

async function main(): Promise<void> {
  const args = readArgs(process.argv.slice(2));
  if (args.engine === 'onnx') return onnxMain(args);
  const backend = await initBackend();
  const log = (s: string) => { if (!args.json) console.log(s); };
  log(`backend ${backend.name} (${backend.reason}); sam-vit-base prompt encoder + mask decoder, random weights (seed ${SEED}), ${args.reps} timed reps + 1 warm-up per row`);
  const model = makeModel();
  const names = trainableDecoderNames(model.decoderParameterNames(), model.config.decoder.num_multimask_outputs);
  const rows: { B: number; what: string; t: Timing[] }[] = [];
  const run = (B: number, what: string, f: () => void) => {
    f(); // warm-up
    const t: Timing[] = [];
    for (let r = 0; r < args.reps; r++) t.push(timed(f));
    rows.push({ B, what, t });
    const w = median(t.map((x) => x.wall));
    log(`  B=${B} ${what}: ${w.toFixed(3)} s/batch, ${(B / w).toFixed(2)} samples/s (CPU ${median(t.map((x) => x.cpu)).toFixed(3)} s)`);
  };

  const leaks: string[] = [];
  for (const B of args.batches) {
    const batch = makeBatch(B);
    const adam = adamInit();
    run(B, 'forward', () => { const o = model.decode(batch.embeddingsNHWC, { inputBoxes: batch.boxes }, false); o.predMasks.dataSync(); tf.dispose([o.predMasks, o.iouScores]); });
    const n0 = tf.memory().numTensors; // after the first decode (SamModel caches its positional embedding)
    run(B, 'forward+backward', () => { const { parts, grads } = lossAndGrads(model, batch, names); parts.loss.dataSync(); tf.dispose([parts.loss, parts.dice, parts.bce, ...grads.values()]); });
    const nStep0 = tf.memory().numTensors;
    run(B, 'step (fwd+bwd+Adam)', () => { trainStep(model, batch, names, adam, ADAM_DEFAULTS); });
    // Adam moments are created by the first step (2 per trained tensor); nothing else may stay.
    const extra = tf.memory().numTensors - nStep0 - 2 * names.length;
    if (extra !== 0 || nStep0 !== n0) leaks.push(`B=${B}: ${extra} extra tensors after steps, ${nStep0 - n0} after fwd/bwd`);
    adamDispose(adam);
    tf.dispose([batch.embeddingsNHWC, batch.boxes, batch.target]);
  }

  if (args.parallel) {
    for (const B of args.batches.filter((b) => b >= 2)) {
      const w = tsWorker(import.meta.url, { B });
      await new Promise((res, rej) => { w.once('message', res); w.once('error', rej); });
      const batch = makeBatch(B);
      const adam = adamInit();
      const half = Math.floor(B / 2);
      const shapes = names.map((n) => model.weights.get(n)!.shape);
      const parts = { local: 0, wait: 0, other: 0 };
      const step = async () => {
        const t0 = performance.now();
        const params = flatten(names.map((n) => model.weights.get(n)!));
        const remote = new Promise<{ grads: Float32Array; scal: number[] }>((res, rej) => { w.once('message', res); w.once('error', rej); });
        w.postMessage({ params, start: half, end: B }, [params.buffer as ArrayBuffer]);
        const sub = subBatch(batch, 0, half);
        const t1 = performance.now();
        const mine = lossAndGrads(model, sub, names);
        mine.parts.loss.dataSync();
        const t2 = performance.now();
        const r = await remote;
        const t3 = performance.now();
        const theirs = unflatten(r.grads, shapes);
        const a = half / B, b = (B - half) / B;
        const grads = new Map(names.map((n, i) => [n, tf.tidy(() => tf.add(tf.mul(mine.grads.get(n)!, a), tf.mul(theirs[i], b)))]));
        const loss = a * mine.parts.loss.dataSync()[0] + b * r.scal[0];
        tf.dispose([...mine.grads.values(), ...theirs, mine.parts.loss, mine.parts.dice, mine.parts.bce, sub.embeddingsNHWC, sub.boxes, sub.target]);
        adamStep(model.weights, grads, adam, ADAM_DEFAULTS);
        tf.dispose([...grads.values()]);
        const t4 = performance.now();
        parts.local += t2 - t1; parts.wait += t3 - t2; parts.other += (t1 - t0) + (t4 - t3);
        return loss;
      };
      await step(); // warm-up
      parts.local = parts.wait = parts.other = 0;
      const t: Timing[] = [];
      for (let r = 0; r < args.reps; r++) {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        await step();
        const c = process.cpuUsage(c0);
        t.push({ wall: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 });
      }
      rows.push({ B, what: 'step, data-parallel (this thread + 1 worker)', t });
      const m = median(t.map((x) => x.wall));
      const per = (x: number) => (x / args.reps / 1000).toFixed(3);
      log(`  B=${B} data-parallel step: ${m.toFixed(3)} s/batch, ${(B / m).toFixed(2)} samples/s (mean per step: own half ${per(parts.local)} s, ` +
        `waiting for the worker ${per(parts.wait)} s, weights out + gradients in + averaging + Adam ${per(parts.other)} s)`);
      w.postMessage({ exit: true });
      adamDispose(adam);
      tf.dispose([batch.embeddingsNHWC, batch.boxes, batch.target]);
    }
  }

  if (args.json) {
    console.log(JSON.stringify({ backend: backend.name, rows, leaks }));
    return;
  }
  const lines = rows.map(({ B, what, t }) => {
    const w = median(t.map((x) => x.wall));
    return `| ${what} | ${B} | ${w.toFixed(3)} | ${(w / B).toFixed(3)} | ${(B / w).toFixed(2)} | ${median(t.map((x) => x.cpu)).toFixed(3)} |`;
  });
  lines.push('| PyTorch 1.13 CPU decoder fine-tune step, jemalloc (peer) | 1 | | 0.101 | 9.9 | |');
  lines.push('| PyTorch 1.13 CPU decoder fine-tune step, default allocator (peer) | 1 | | 0.145 | 6.9 | |');
  console.log(`\n| ${backend.name} | B | s / batch | s / sample | samples / s | CPU s / batch |\n|---|---|---|---|---|---|\n${lines.join('\n')}`);
  console.log(leaks.length ? `\nTENSOR LEAKS: ${leaks.join('; ')}` : '\ntf.memory().numTensors stable across steps (only the Adam moments are added)');
  model.dispose();
}

if (isMainThread) { if (await withGlibcTunables(fileURLToPath(import.meta.url))) await main(); }
else await worker();
