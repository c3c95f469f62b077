// Worker side of data-parallel decoder steps: holds the frozen prompt encoder and a copy of the decoder, and
// returns the gradients of the batch half it is sent, with the decoder weights of that step.
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@fedsam/shared/backend';
import { SamModel } from '@fedsam/shared/model/sam';
import { lossAndGrads } from '@fedsam/shared/train/step';
import type { SamConfig } from '@fedsam/shared/config';
import type { HostTensor } from '@fedsam/shared/safetensors';
import { disposeBatch, hostToBatch, type HostHalf } from './dataParallel.ts';

async function main() {
  const { backend, config, weights, names } = workerData as { backend?: string; config: SamConfig; weights: Array<[string, HostTensor]>; names: string[] };
  await initBackend(backend);
  const model = SamModel.fromHost(config, new Map(weights));
  const shapes = names.map((n) => model.weights.get(n)!.shape);
  parentPort!.postMessage({ ready: true });
  parentPort!.on('message', (m: { params: Float32Array; half: HostHalf } | { exit: true }) => {
    if ('exit' in m) { model.dispose(); process.exit(0); }
    let off = 0;
    names.forEach((n, i) => {
      const size = shapes[i].reduce((a, b) => a * b, 1);
      model.weights.get(n)!.dispose();
      model.weights.set(n, tf.tensor(m.params.subarray(off, off + size), shapes[i], 'float32'));
      off += size;
    });
    const batch = hostToBatch(m.half);
    const { parts, grads } = lossAndGrads(model, batch, names);
    const flat = new Float32Array(off);
    let o = 0;
    for (const n of names) { const d = grads.get(n)!.dataSync() as Float32Array; flat.set(d, o); o += d.length; }
    const scal = [parts.loss, parts.dice, parts.bce].map((t) => t.dataSync()[0]);
    tf.dispose([parts.loss, parts.dice, parts.bce, ...grads.values()]);
    disposeBatch(batch);
    parentPort!.postMessage({ grads: flat, scal }, [flat.buffer as ArrayBuffer]);
  });
}

main().catch((e) => parentPort!.postMessage({ error: (e as Error).message }));
