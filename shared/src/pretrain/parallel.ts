// Pretraining steps over two threads: tfjs-wasm runs on one core per thread, and a step's gradients are a mean over
// its images computed one image at a time (step.ts), so a worker takes the second half of the batch with the same
// weights and the halves' gradients are combined as the sequential mean would (an image without a gradient for a
// tensor counts as zero). ~1.8x the steps per hour on 2 cores.
import * as tf from '@tensorflow/tfjs';
import type { Worker } from 'node:worker_threads';
import { currentBackend } from '../backend.ts';
import type { SamConfig } from '../config.ts';
import type { SamModel } from '../model/sam.ts';
import type { HostTensor } from '../safetensors.ts';
import { tsWorker } from '../worker.ts';
import { pretrainLossAndGrads, type PretrainItem, type PretrainLossOptions, type PretrainStats } from './step.ts';

/** What the worker sends back for its half. */
export interface HalfResult {
  /** Names with a gradient, in order, and their gradients flattened (each the mean over the half's images). */
  names: string[];
  grads: Float32Array;
  stats: PretrainStats;
  /** Images with at least one prompt (the mean's denominator). */
  images: number;
  error?: string;
}

const imagesOf = (items: PretrainItem[]) => items.filter((i) => i.prompts.length).length;

/** Stats of two halves as one batch's (per-prompt means weighted by prompt counts). */
export function mergeStats(a: PretrainStats, b: PretrainStats): PretrainStats {
  const n = a.prompts + b.prompts || 1;
  const w = (x: number, y: number) => (x * a.prompts + y * b.prompts) / n;
  return { loss: w(a.loss, b.loss), maskLoss: w(a.maskLoss, b.maskLoss), iouLoss: w(a.iouLoss, b.iouLoss), dice: w(a.dice, b.dice), iou: w(a.iou, b.iou), prompts: a.prompts + b.prompts };
}

export class PretrainParallel {
  private constructor(private readonly worker: Worker) {}

  /** A worker holding a copy of `model` (all its tensors, the fixed ones included). */
  static async start(config: SamConfig, model: SamModel): Promise<PretrainParallel> {
    const weights: Array<[string, HostTensor]> = [...model.weights].map(([n, t]) => [n, { dtype: 'float32', shape: [...t.shape], data: Float32Array.from(t.dataSync() as Float32Array) }]);
    const worker = tsWorker(new URL('./pretrainWorker.ts', import.meta.url), { backend: currentBackend()?.name, config, weights });
    await new Promise<void>((resolve, reject) => {
      worker.once('message', (m: { ready?: boolean; error?: string }) => (m.ready ? resolve() : reject(new Error(`pretraining worker: ${m.error}`))));
      worker.once('error', reject);
    });
    return new PretrainParallel(worker);
  }

  /** Loss and gradients of the whole batch: the first half here, the second in the worker. Caller disposes the grads. */
  async lossAndGrads(model: SamModel, items: PretrainItem[], names: string[], opts: PretrainLossOptions): Promise<{ stats: PretrainStats; grads: Map<string, tf.Tensor> }> {
    const half = Math.ceil(items.length / 2);
    const mine = items.slice(0, half), theirs = items.slice(half);
    if (!theirs.length) return pretrainLossAndGrads(model, mine, names, opts);
    const weights: Array<[string, Float32Array, number[]]> = names.map((n) => {
      const t = model.weights.get(n)!;
      return [n, Float32Array.from(t.dataSync() as Float32Array), [...t.shape]];
    });
    const remote = new Promise<HalfResult>((resolve, reject) => {
      const onError = (e: Error) => { this.worker.off('message', onMessage); reject(e); };
      const onMessage = (m: HalfResult) => { this.worker.off('error', onError); resolve(m); };
      this.worker.once('message', onMessage);
      this.worker.once('error', onError);
    });
    this.worker.postMessage({ weights, items: theirs, names, opts }, weights.map(([, d]) => d.buffer as ArrayBuffer));
    const local = pretrainLossAndGrads(model, mine, names, opts);
    let r: HalfResult;
    try {
      r = await remote;
    } catch (e) {
      tf.dispose([...local.grads.values()]);
      throw e;
    }
    if (r.error) {
      tf.dispose([...local.grads.values()]);
      throw new Error(`pretraining worker: ${r.error}`);
    }
    const n1 = imagesOf(mine), n2 = r.images, n = n1 + n2 || 1;
    const grads = new Map<string, tf.Tensor>();
    let off = 0;
    const theirsByName = new Map<string, Float32Array>();
    for (const name of r.names) {
      const size = model.weights.get(name)!.size;
      theirsByName.set(name, r.grads.subarray(off, off + size));
      off += size;
    }
    for (const name of new Set([...local.grads.keys(), ...theirsByName.keys()])) {
      const shape = model.weights.get(name)!.shape;
      const g1 = local.grads.get(name), g2 = theirsByName.get(name);
      grads.set(name, tf.tidy(() => {
        const a = g1 ? tf.mul(g1, n1 / n) : undefined;
        const b = g2 ? tf.mul(tf.tensor(g2, shape, 'float32'), n2 / n) : undefined;
        return a && b ? tf.add(a, b) : (a ?? b)!;
      }));
    }
    tf.dispose([...local.grads.values()]);
    return { stats: mergeStats(local.stats, r.stats), grads };
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
