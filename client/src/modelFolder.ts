// A SamModel as an HF SamModel folder (what `fedsam train`, `save-default-model` and `simulate` write).
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { saveSamCheckpoint } from '@fedsam/shared/checkpoint/save';
import type { HostTensor } from '@fedsam/shared/safetensors';
import type { LoadedModel } from '@fedsam/shared/model/presets';

export function modelToHost(loaded: LoadedModel): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const [name, t] of loaded.model.weights) out.set(name, { dtype: 'float32', shape: [...t.shape], data: t.dataSync() as Float32Array });
  for (const [name, t] of loaded.visionHost ?? []) out.set(name, t); // kept out of tfjs for the onnx engine
  return out;
}

/** Save a full HF SamModel folder (config.json + model.safetensors + preprocessor_config.json). */
export async function saveModelFolder(dir: string, loaded: LoadedModel): Promise<void> {
  await saveSamCheckpoint(dir, loaded.config, modelToHost(loaded));
  const pp = loaded.processor.config;
  await writeFile(join(dir, 'preprocessor_config.json'), JSON.stringify({ image_processor_type: 'SamImageProcessor', processor_class: 'SamProcessor', ...pp }, null, 2) + '\n');
}
