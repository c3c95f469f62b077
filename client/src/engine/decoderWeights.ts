// The mask decoder's weights as host arrays (what travels, what sites keep) and back into a loaded model.
import * as tf from '@tensorflow/tfjs';
import type { HostTensor } from '@fedsam/shared/safetensors';
import type { LoadedModel } from '@fedsam/shared/model/presets';

/** Copy the model's mask-decoder weights to host arrays (what travels). */
export function decoderToHost(loaded: LoadedModel): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const name of loaded.model.decoderParameterNames()) {
    const t = loaded.model.weights.get(name)!;
    out.set(name, { dtype: 'float32', shape: [...t.shape], data: Float32Array.from(t.dataSync() as Float32Array) });
  }
  return out;
}

/** Replace the model's mask-decoder weights by host arrays; names and shapes must match exactly. */
export function setDecoderFromHost(loaded: LoadedModel, weights: Map<string, HostTensor>): void {
  const names = loaded.model.decoderParameterNames();
  const missing = names.filter((n) => !weights.has(n));
  if (missing.length) throw new Error(`decoder weights lack ${missing.length} tensors (first: ${missing[0]})`);
  for (const n of names) {
    const cur = loaded.model.weights.get(n)!;
    const w = weights.get(n)!;
    if (w.shape.join() !== cur.shape.join()) throw new Error(`decoder tensor ${n} has shape [${w.shape}], the model has [${cur.shape}]`);
    loaded.model.weights.set(n, tf.tensor(w.data as Float32Array, w.shape, 'float32'));
    cur.dispose();
  }
}
