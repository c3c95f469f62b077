// Data-parallel decoder steps over two threads: this thread computes the gradients of the first half of a batch
// while a worker computes the second half with the same weights; the gradients are averaged (weighted by the
// halves' sizes: the loss is a mean over samples, so this equals the full-batch gradient) and one Adam step is
// taken here. Pays when a step is much longer than shipping the decoder weights (sam-vit-base: ~1.8x, see bench).
import * as tf from '@tensorflow/tfjs';
import { cpus } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { tsWorker } from '@fedsam/shared/worker';
import { currentBackend } from '@fedsam/shared/backend';
import type { LoadedModel } from '@fedsam/shared/model/presets';
import type { HostTensor } from '@fedsam/shared/safetensors';
import { lossAndGrads, type TrainBatch, type StepResult } from '@fedsam/shared/train/step';
import { adamStep, type AdamOptions, type AdamState } from '@fedsam/shared/train/adam';

/** One half of a batch as host arrays (what crosses to the worker). */
export interface HostHalf {
  emb: Float32Array;
  embShape: [number, number, number, number];
  boxes: number[][];
  target: Float32Array;
  targetShape: [number, number, number, number];
  points?: number[][][];
  labels?: number[][][];
}

/** Tensors of a host batch (what both threads train on). */
export function hostToBatch(h: HostHalf): TrainBatch {
  return {
    embeddingsNHWC: tf.tensor4d(h.emb, h.embShape),
    boxes: tf.tensor3d(h.boxes.map((b) => [b]), [h.boxes.length, 1, 4]),
    target: tf.tensor4d(h.target, h.targetShape),
    points: h.points ? tf.tensor4d(h.points.map((p) => [p]), [h.points.length, 1, h.points[0].length, 2]) : undefined,
    labels: h.labels,
  };
}

export function disposeBatch(b: TrainBatch): void {
  tf.dispose([b.embeddingsNHWC, b.boxes, b.target, ...(b.points ? [b.points] : [])]);
}

/**
 * Data-parallel steps by default when a batch has 2+ samples and there are 2+ cores (measured: 1.8x at sam-vit-base
 * size, 1.5x for fedsam-tiny). Callers that already run one engine per core (simulate) turn it off.
 */
export function dataParallelPays(_loaded: LoadedModel, batchSize: number): boolean {
  return batchSize >= 2 && cpus().length >= 2;
}

/**
 * The worker is started once and can serve many trainDecoder calls (a site daemon keeps one for all its rounds):
 * every step sends the current decoder weights. It only keeps the process alive while it works on a step.
 */
/** The worker's next message or error, whichever comes first; the other listener goes too (one pair per step). */
function reply<T>(worker: Worker, onMessage: (m: T) => void, onError: (e: Error) => void): void {
  const message = (m: T) => { worker.off('error', error); onMessage(m); };
  const error = (e: Error) => { worker.off('message', message); onError(e); };
  worker.once('message', message);
  worker.once('error', error);
}

export class DataParallel {
  private constructor(private readonly worker: Worker, private readonly names: string[]) {}

  static async start(loaded: LoadedModel, names: string[]): Promise<DataParallel> {
    const weights: Array<[string, HostTensor]> = [];
    for (const [n, t] of loaded.model.weights) {
      if (n.startsWith('vision_encoder.')) continue;
      weights.push([n, { dtype: 'float32', shape: [...t.shape], data: t.dataSync() as Float32Array }]);
    }
    const worker = tsWorker(new URL('./gradWorker.ts', import.meta.url), { backend: currentBackend()?.name, config: loaded.config, weights, names });
    await new Promise<void>((resolve, reject) => {
      reply(worker, (m: { ready?: boolean; error?: string }) => (m.ready ? resolve() : reject(new Error(`data-parallel worker: ${m.error}`))), reject);
    });
    worker.unref();
    return new DataParallel(worker, names);
  }

  /** One step on a batch given as host arrays; the model's decoder weights are updated in place. */
  async step(loaded: LoadedModel, batch: TrainBatch, host: { second: HostHalf; firstSize: number }, adam: AdamState, opts: AdamOptions): Promise<StepResult> {
    const model = loaded.model;
    const sizes = this.names.map((n) => model.weights.get(n)!.size);
    const params = new Float32Array(sizes.reduce((a, b) => a + b, 0));
    let off = 0;
    this.names.forEach((n, i) => { params.set(model.weights.get(n)!.dataSync() as Float32Array, off); off += sizes[i]; });
    const remote = new Promise<{ grads: Float32Array; scal: number[]; error?: string }>((resolve, reject) => reply(this.worker, resolve, reject));
    this.worker.ref();
    // The half's arrays were made for this step: moved to the worker, not copied.
    this.worker.postMessage({ params, half: host.second }, [params.buffer as ArrayBuffer, host.second.emb.buffer as ArrayBuffer, host.second.target.buffer as ArrayBuffer]);
    const mine = lossAndGrads(model, batch, this.names);
    const r = await remote.finally(() => this.worker.unref());
    if (r.error) throw new Error(`data-parallel worker: ${r.error}`);
    const B = host.firstSize + host.second.boxes.length;
    const a = host.firstSize / B, b = 1 - a;
    const grads = new Map<string, tf.Tensor>();
    off = 0;
    this.names.forEach((n, i) => {
      const theirs = r.grads.subarray(off, off + sizes[i]);
      off += sizes[i];
      grads.set(n, tf.tidy(() => tf.add(tf.mul(mine.grads.get(n)!, a), tf.mul(tf.tensor(theirs, mine.grads.get(n)!.shape), b))));
    });
    const res = { loss: a * mine.parts.loss.dataSync()[0] + b * r.scal[0], dice: a * mine.parts.dice.dataSync()[0] + b * r.scal[1], bce: a * mine.parts.bce.dataSync()[0] + b * r.scal[2] };
    tf.dispose([mine.parts.loss, mine.parts.dice, mine.parts.bce, ...mine.grads.values()]);
    adamStep(model.weights, grads, adam, opts);
    tf.dispose([...grads.values()]);
    return res;
  }

  async close(): Promise<void> {
    this.worker.ref(); // wait for it to exit
    this.worker.postMessage({ exit: true });
    await new Promise((r) => this.worker.once('exit', r));
  }
}
