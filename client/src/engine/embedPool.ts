// A pool of worker threads that run the frozen vision encoder, so embedding uses every core. tfjs's wasm and cpu
// backends are single-threaded in Node: one encoder per thread. Each worker starts the main thread's backend and
// builds its own encoder from the main thread's vision weights, which are copied once into one SharedArrayBuffer
// that all workers read (ViT-B: 375 MB once, not once per worker). Jobs are RGB images; the worker preprocesses
// (same SamProcessor code) and returns NHWC embeddings by transferring the buffer. Same backend -> bit-identical
// to embedding on the main thread.
//
// Workers are TypeScript. Node 20 does not apply `--import tsx` module hooks to a worker's entry (nor to what it
// imports), so each worker starts from a tiny eval'd bootstrap that calls tsx's register() and then imports
// embedWorker.ts. That works the same under `node --import tsx` and under bin/fedsam.mjs (register() API, empty
// process.execArgv), whatever the current directory.
import type { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { currentBackend } from '@fedsam/shared/backend';
import type { SamConfig } from '@fedsam/shared/config';
import type { SamPreprocessorConfig } from '@fedsam/shared/processor';
import type { LoadedModel } from '@fedsam/shared/model/presets';
import type { SamModel } from '@fedsam/shared/model/sam';
import type { RGBImage } from '../data/types.ts';
import { tsWorker } from '@fedsam/shared/worker';

/** Vision-encoder weights packed into one shared buffer (float32, back to back). */
export interface SharedWeights {
  buffer: SharedArrayBuffer;
  entries: { name: string; shape: number[]; offset: number; length: number }[];
}

/** workerData of embedWorker.ts. */
export interface WorkerInit { backend: string; config: SamConfig; processor: SamPreprocessorConfig; weights: SharedWeights }

export type ToWorker =
  | { type: 'embed'; id: number; image: RGBImage }
  /** Test hook: the worker dies of an uncaught exception when it gets its next job. */
  | { type: 'crash' };

export type FromWorker =
  | { type: 'ready'; backend: string; simd?: boolean }
  | { type: 'init-failed'; message: string }
  | { type: 'done'; id: number; data: Float32Array; shape: [number, number, number, number]; originalSize: [number, number]; reshapedSize: [number, number] }
  | { type: 'failed'; id: number; message: string };

export interface EmbedResult {
  /** NHWC [1, h, w, C]. */
  data: Float32Array;
  shape: [number, number, number, number];
  originalSize: [number, number];
  reshapedSize: [number, number];
}

/**
 * Backends that run one op at a time on the calling thread (more threads = more throughput), with a rough
 * single-thread encoder throughput in GFLOP/s, good to a factor of 2-3 (tfjs 4.22 wasm on a 2-core VM: fedsam-tiny
 * 3.5, a 64×64-grid one-layer encoder 10, ViT-B ~2; the cpu backend: fedsam-tiny 0.13).
 */
const SINGLE_THREADED: Record<string, number> = { wasm: 5, cpu: 0.15 };
/** What starting a worker costs (tsx + tfjs import + backend + weights: ~1.5 s idle, ~3.5 s on a busy machine). */
const POOL_START_SECONDS = 2;

/** Approximate forward cost of the vision encoder for one image, in GFLOP (matmuls, attention, patch conv, neck). */
export function encoderGflop(config: SamConfig): number {
  const v = config.vision;
  const n = v.gridSize * v.gridSize, d = v.hidden_size, c = v.output_channels;
  const window = v.window_size > 0 ? Math.min(n, v.window_size * v.window_size) : n;
  let f = 2 * n * 3 * v.patch_size * v.patch_size * d;
  for (let l = 0; l < v.num_hidden_layers; l++) {
    const keys = v.window_size === 0 || v.global_attn_indexes.includes(l) ? n : window;
    f += 2 * n * d * 4 * d + 2 * 2 * n * d * v.mlpDim + 2 * 2 * n * keys * d;
  }
  f += 2 * n * d * c + 2 * 9 * n * c * c;
  return f / 1e9;
}

/** FEDSAM_EMBED_WORKERS, when set (a whole number >= 0). */
export function embedWorkersFromEnv(): number | undefined {
  const env = process.env.FEDSAM_EMBED_WORKERS;
  if (env === undefined || env.trim() === '') return undefined;
  const n = Number(env);
  if (!Number.isInteger(n) || n < 0) throw new Error(`FEDSAM_EMBED_WORKERS must be a whole number >= 0 (got "${env}")`);
  return n;
}

/**
 * Default worker count for embedding `toEmbed` images with `config`'s encoder: FEDSAM_EMBED_WORKERS if set; else
 * min(2, cores) when the backend is single-threaded (wasm, cpu), at least 4 images wait and the predicted time saved
 * exceeds 1.5× the pool's start-up (ViT-B: always; fedsam-tiny: from ~50 images on wasm, 4 on cpu); else 0 = this thread.
 */
export function defaultEmbedWorkers(toEmbed: number, config?: SamConfig): number {
  const env = embedWorkersFromEnv();
  if (env !== undefined) return env;
  const rate = SINGLE_THREADED[currentBackend()?.name ?? tf.getBackend()];
  if (rate === undefined || toEmbed < 4) return 0;
  const n = Math.min(2, availableParallelism());
  if (n < 2) return 0;
  if (config) {
    const saved = toEmbed * (encoderGflop(config) / rate) * (1 - 1 / n);
    if (saved < 1.5 * POOL_START_SECONDS) return 0;
  }
  return n;
}

/** Copy the model's vision_encoder.* weights into one SharedArrayBuffer. */
export function sharedVisionWeights(model: SamModel): SharedWeights {
  const names = [...model.weights.keys()].filter((n) => n.startsWith('vision_encoder.')).sort();
  if (names.length === 0) throw new Error('the model has no vision_encoder weights to embed with');
  const entries: SharedWeights['entries'] = [];
  let bytes = 0;
  for (const name of names) {
    const t = model.weights.get(name)!;
    if (t.dtype !== 'float32') throw new Error(`vision weight ${name} is ${t.dtype}, expected float32`);
    entries.push({ name, shape: [...t.shape], offset: bytes, length: t.size });
    bytes += t.size * 4;
  }
  const buffer = new SharedArrayBuffer(bytes);
  for (const e of entries) new Float32Array(buffer, e.offset, e.length).set(model.weights.get(e.name)!.dataSync() as Float32Array);
  return { buffer, entries };
}

interface Job { id: number; image: RGBImage; name: string; resolve: (r: EmbedResult) => void; reject: (e: Error) => void }
interface Slot { index: number; worker: Worker; alive: boolean; job?: Job; lastError?: string }

export interface EmbedPoolOptions {
  workers: number;
  /** Backend for the workers (default: the main thread's). */
  backend?: string;
  /** Give up on workers that are not ready after this long (default 120 s; ViT-B weights take a while). */
  startTimeoutMs?: number;
}

export class EmbedPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextId = 0;
  private closed = false;
  /** What the workers reported at start (backend, SIMD). */
  readonly info: { backend: string; simd?: boolean }[] = [];

  private constructor() {}

  /** Start `workers` workers and wait until each has built its encoder. Fails if none starts. */
  static async create(loaded: LoadedModel, opts: EmbedPoolOptions): Promise<EmbedPool> {
    if (!(Number.isInteger(opts.workers) && opts.workers >= 1)) throw new RangeError(`EmbedPool needs workers >= 1 (got ${opts.workers})`);
    const backend = opts.backend ?? currentBackend()?.name ?? tf.getBackend();
    const init: WorkerInit = { backend, config: loaded.config, processor: loaded.processor.config, weights: sharedVisionWeights(loaded.model) };
    const pool = new EmbedPool();
    const timeout = opts.startTimeoutMs ?? 120_000;
    const starts = Array.from({ length: opts.workers }, (_, index) => pool.spawn(index, init, timeout));
    const results = await Promise.allSettled(starts);
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => (r.reason as Error).message);
    if (!pool.slots.some((s) => s.alive)) {
      await pool.close();
      throw new Error(`no embedding worker could start: ${failures[0] ?? 'unknown error'}`);
    }
    return pool;
  }

  private spawn(index: number, init: WorkerInit, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      // execArgv [] : the parent's flags (--import tsx, --test ...) are no use in a worker; the bootstrap loads tsx.
      const worker = tsWorker(new URL('./embedWorker.ts', import.meta.url), init, { execArgv: [] });
      const slot: Slot = { index, worker, alive: false };
      let started = false;
      const timer = setTimeout(() => {
        if (started) return;
        started = true;
        reject(new Error(`embedding worker ${index} did not start within ${timeoutMs / 1000} s`));
        void worker.terminate();
      }, timeoutMs);
      worker.on('message', (m: FromWorker) => {
        if (m.type === 'ready' || m.type === 'init-failed') {
          if (started) return;
          started = true;
          clearTimeout(timer);
          if (m.type === 'init-failed') {
            reject(new Error(`embedding worker ${index} failed to start: ${m.message}`));
            void worker.terminate();
            return;
          }
          slot.alive = !this.closed;
          this.info[index] = { backend: m.backend, simd: m.simd };
          resolve();
          this.dispatch();
          return;
        }
        this.onResult(slot, m);
      });
      worker.on('error', (e) => { slot.lastError = e.message; });
      worker.on('exit', (code) => {
        clearTimeout(timer);
        const wasAlive = slot.alive;
        slot.alive = false;
        if (!started) {
          started = true;
          reject(new Error(`embedding worker ${index} exited while starting: ${slot.lastError ?? `exit code ${code}`}`));
        }
        const job = slot.job;
        slot.job = undefined;
        if (job) {
          job.reject(new Error(this.closed ? `embedding pool closed; ${job.name} was not embedded`
            : `embedding worker ${index} died while embedding ${job.name}: ${slot.lastError ?? `exit code ${code}`}`));
        }
        if (wasAlive && !this.closed) this.afterLoss(slot, code);
      });
      this.slots.push(slot);
    });
  }

  /** A worker is gone: the others take over its queue; with none left, every waiting job fails (nothing hangs). */
  private afterLoss(slot: Slot, code: number): void {
    if (this.slots.some((s) => s.alive)) {
      this.dispatch();
      return;
    }
    const why = slot.lastError ?? `exit code ${code}`;
    for (const job of this.queue.splice(0)) job.reject(new Error(`no embedding worker left (last one died: ${why}); ${job.name} was not embedded`));
  }

  private onResult(slot: Slot, m: FromWorker): void {
    const job = slot.job;
    if (!job || (m.type !== 'done' && m.type !== 'failed') || m.id !== job.id) return;
    slot.job = undefined;
    if (m.type === 'done') job.resolve({ data: m.data, shape: m.shape, originalSize: m.originalSize, reshapedSize: m.reshapedSize });
    else job.reject(new Error(`embedding ${job.name} failed: ${m.message}`));
    this.dispatch();
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (!this.queue.length) return;
      if (!slot.alive || slot.job) continue;
      const job = this.queue.shift()!;
      slot.job = job;
      const msg: ToWorker = { type: 'embed', id: job.id, image: job.image };
      slot.worker.postMessage(msg);
    }
  }

  /** Workers that are up. */
  get size(): number {
    return this.slots.filter((s) => s.alive).length;
  }

  /** Embed one RGB image; `name` (file, slice, sample) is what errors mention. */
  embed(image: RGBImage, name: string): Promise<EmbedResult> {
    if (this.closed) return Promise.reject(new Error(`embedding pool is closed; ${name} was not embedded`));
    if (!this.slots.some((s) => s.alive)) return Promise.reject(new Error(`no embedding worker left; ${name} was not embedded`));
    return new Promise<EmbedResult>((resolve, reject) => {
      this.queue.push({ id: this.nextId++, image, name, resolve, reject });
      this.dispatch();
    });
  }

  /** Test hook: worker `index` dies of an uncaught exception when it gets its next job. */
  simulateCrash(index: number): void {
    const msg: ToWorker = { type: 'crash' };
    this.slots[index]?.worker.postMessage(msg);
  }

  /** Stop all workers; jobs not finished yet fail. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const job of this.queue.splice(0)) job.reject(new Error(`embedding pool closed; ${job.name} was not embedded`));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
