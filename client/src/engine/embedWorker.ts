// Worker-thread side of the embedding pool (embedPool.ts): starts its own tfjs backend (the main thread's), builds
// the vision encoder from the shared host weights, then preprocesses RGB images and runs the encoder, one at a time.
// The embedding buffer is transferred back (no copy). Protocol: see the message types in embedPool.ts.
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@fedsam/shared/backend';
import { SamModel } from '@fedsam/shared/model/sam';
import { SamProcessor, pixelValuesTensor } from '@fedsam/shared/processor';
import type { Weights } from '@fedsam/shared/model/ops';
import type { WorkerInit, ToWorker, FromWorker } from './embedPool.ts';

const port = parentPort!;
const send = (m: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

async function start(init: WorkerInit): Promise<{ model: SamModel; processor: SamProcessor }> {
  tf.env().set('PROD', true); // only silences tfjs's console notices (the main thread has shown them already)
  await initBackend(init.backend);
  const w: Weights = new Map();
  const wasm = tf.getBackend() === 'wasm';
  for (const e of init.weights.entries) {
    const view = new Float32Array(init.weights.buffer, e.offset, e.length);
    // wasm copies into its own heap; other backends may keep the array they are given: give them a private copy,
    // so no worker ever computes on memory another thread can see.
    w.set(e.name, tf.tensor(wasm ? view : view.slice(), e.shape, 'float32'));
  }
  return { model: new SamModel(init.config, w), processor: new SamProcessor(init.processor, 'embedding pool') };
}

const ready = start(workerData as WorkerInit);
ready.then(
  () => send({ type: 'ready', backend: tf.getBackend(), simd: tf.getBackend() === 'wasm' ? tf.env().getBool('WASM_HAS_SIMD_SUPPORT') : undefined }),
  (e: Error) => send({ type: 'init-failed', message: e.message }),
);

let crashOnNextJob = false;

port.on('message', async (m: ToWorker) => {
  if (m.type === 'crash') {
    crashOnNextJob = true;
    return;
  }
  if (crashOnNextJob) {
    // Test hook: die of an uncaught exception while holding a job, as a native abort or OOM would.
    setImmediate(() => { throw new Error('simulated worker crash'); });
    return;
  }
  const { model, processor } = await ready;
  try {
    const pre = processor.preprocessRGB({ data: m.image.data, width: m.image.width, height: m.image.height });
    const emb = tf.tidy(() => model.imageEmbeddingsNHWC(pixelValuesTensor(pre)));
    const shape = emb.shape as [number, number, number, number];
    const data = (await emb.data()) as Float32Array;
    emb.dispose();
    // wasm's read is a fresh copy of the heap range; other backends may hand out their own storage: copy those.
    const own = tf.getBackend() === 'wasm' && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer;
    const out = own ? data : data.slice();
    send({
      type: 'done', id: m.id, data: out, shape,
      originalSize: pre.originalSize as [number, number], reshapedSize: pre.reshapedInputSize as [number, number],
    }, [out.buffer as ArrayBuffer]);
  } catch (e) {
    send({ type: 'failed', id: m.id, message: (e as Error).message });
  }
});
