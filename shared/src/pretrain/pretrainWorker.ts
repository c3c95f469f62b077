// Worker side of PretrainParallel: a model of the run's config whose trainable weights it is sent every step, and
// the loss and gradients of the batch half it is sent.
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../backend.ts';
import type { SamConfig } from '../config.ts';
import type { HostTensor } from '../safetensors.ts';
import { SamModel } from '../model/sam.ts';
import { pretrainLossAndGrads, type PretrainItem, type PretrainLossOptions } from './step.ts';

interface StepMessage { weights: Array<[string, Float32Array, number[]]>; items: PretrainItem[]; names: string[]; opts: PretrainLossOptions }

async function main() {
  const { backend, config, weights } = workerData as { backend?: string; config: SamConfig; weights: Array<[string, HostTensor]> };
  await initBackend(backend);
  const model = SamModel.fromHost(config, new Map(weights));
  parentPort!.postMessage({ ready: true });
  parentPort!.on('message', (m: StepMessage) => {
    try {
      for (const [n, data, shape] of m.weights) {
        model.weights.get(n)!.dispose();
        model.weights.set(n, tf.tensor(data, shape, 'float32'));
      }
      const { stats, grads } = pretrainLossAndGrads(model, m.items, m.names, m.opts);
      const names = [...grads.keys()];
      const flat = new Float32Array(names.reduce((a, n) => a + grads.get(n)!.size, 0));
      let o = 0;
      for (const n of names) { const d = grads.get(n)!.dataSync() as Float32Array; flat.set(d, o); o += d.length; }
      tf.dispose([...grads.values()]);
      parentPort!.postMessage({ names, grads: flat, stats, images: m.items.filter((i) => i.prompts.length).length }, [flat.buffer as ArrayBuffer]);
    } catch (e) {
      parentPort!.postMessage({ error: (e as Error).message, names: [], grads: new Float32Array(0), stats: { loss: 0, maskLoss: 0, iouLoss: 0, dice: 0, iou: 0, prompts: 0 }, images: 0 });
    }
  });
}

main().catch((e) => parentPort!.postMessage({ error: (e as Error).message }));
