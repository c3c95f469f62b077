// Make the chosen inference engine for a model: ONNX Runtime graphs built from the model's weights, or the tfjs
// SamModel itself.
import type { SamConfig } from './config.ts';
import type { HostTensor } from './safetensors.ts';
import type { SamModel } from './model/sam.ts';
import { TfjsInference, currentEngine, modelWeightSource, type EngineName, type SamInference, type WeightSource } from './inference.ts';
import { OnnxSamInference } from './onnx/samOnnx.ts';
import { VISION_KEYS, weightOf } from './checkpoint/keys.ts';

export interface InferenceSource {
  config: SamConfig;
  model: SamModel;
  /** sha256 of the vision encoder weights: the ONNX graph cache key. */
  visionHash?: string;
  /** Vision weights kept on the host (LoadedModel.visionHost). */
  visionHost?: Map<string, HostTensor>;
}

export interface InferenceOptions {
  /** Default: the process-wide choice (--engine / FEDSAM_ENGINE / onnx where it loads). */
  engine?: EngineName;
  /** Weights for the ONNX graphs (default: read from the tfjs model). */
  weights?: WeightSource;
  /** ONNX graph cache folder; null = build in memory only. */
  graphCacheDir?: string | null;
  warmUp?: boolean;
}

export function createInference(src: InferenceSource, o: InferenceOptions = {}): SamInference {
  const engine = o.engine ?? currentEngine().name;
  if (engine === 'tfjs') {
    if (src.visionHost && !src.model.weights.has(weightOf(VISION_KEYS.patchEmbed))) {
      throw new Error('this model was loaded for the onnx engine (vision weights kept out of tfjs): load it again with engine tfjs');
    }
    return new TfjsInference(src.model);
  }
  return new OnnxSamInference({
    config: src.config, weights: o.weights ?? modelWeightSource(src.model, src.visionHost), visionHash: src.visionHash,
    cacheDir: o.graphCacheDir, warmUp: o.warmUp,
  });
}

const perModel = new WeakMap<object, Map<string, SamInference>>();

/**
 * The inference engine of a loaded model, made once per model and engine and kept for the model's life (its ONNX
 * sessions notice when training replaced the decoder weights and rebuild those graphs).
 */
export function inferenceFor(src: InferenceSource, engine: EngineName = currentEngine().name): SamInference {
  let m = perModel.get(src.model);
  if (!m) perModel.set(src.model, (m = new Map()));
  let inf = m.get(engine);
  if (!inf) m.set(engine, (inf = createInference(src, { engine })));
  return inf;
}

/** Release the engines made by inferenceFor for this model (their native sessions). */
export async function releaseInference(model: SamModel): Promise<void> {
  const m = perModel.get(model);
  perModel.delete(model);
  if (m) await Promise.all([...m.values()].map((i) => i.dispose()));
}
