// The inference engine: what runs the frozen vision encoder and the prompt encoder + mask decoder forward for
// embedding, predict, evaluate and verify-reference. Two implementations behind one interface, on host arrays:
// ONNX Runtime (onnx/samOnnx.ts; the default where onnxruntime-node loads) and the tfjs SamModel (the fallback, and
// what training always uses). `--engine` / FEDSAM_ENGINE chooses; the choice and its reason are logged.
import * as tf from '@tensorflow/tfjs';
import type { HostTensor } from './safetensors.ts';
import type { SamModel } from './model/sam.ts';
import { denseEmbeddingsFull } from './model/promptEncoder.ts';
import { SAM_PARTS } from './checkpoint/keys.ts';
import { loadOrt, ortVersion } from './onnx/runtime.ts';

export interface HostArray<T extends Float32Array | Int32Array = Float32Array> { data: T; shape: number[] }

export interface DecodeInputs {
  /** [B, h, w, C] image embeddings (what the cache stores). */
  embeddingsNHWC: HostArray;
  /** [B, pb, N, 2] in model-input pixels. */
  inputPoints?: HostArray;
  /** [B, pb, N]: 1, 0, -1, -10. */
  inputLabels?: HostArray<Int32Array>;
  /** [B, pb, 4] x1, y1, x2, y2 in model-input pixels. */
  inputBoxes?: HostArray;
  /** [B, 1, 4h, 4w] mask logits. */
  inputMasks?: HostArray;
  multimask: boolean;
}

export interface DecodeResult {
  /** [B, pb, k, 4h, 4w] low-res mask logits (HF pred_masks). */
  predMasks: HostArray;
  /** [B, pb, k] (HF iou_scores). */
  iouScores: HostArray;
}

export type EngineName = 'onnx' | 'tfjs';
export const ENGINES: readonly EngineName[] = ['onnx', 'tfjs'];

export interface SamInference {
  readonly engine: EngineName;
  /** Vision encoder on pixel_values [B, 3, S, S] -> NHWC [B, h, w, C]. */
  embed(pixelValues: HostArray): Promise<HostArray>;
  decode(inp: DecodeInputs): Promise<DecodeResult>;
  /** The prompt encoder's outputs (parity checks): sparse [B, pb, n, C] (none without prompts), dense NCHW [B, C, h, w]. */
  promptEmbeddings(inp: Omit<DecodeInputs, 'multimask'>): Promise<{ sparse?: HostArray; dense: HostArray }>;
  dispose(): Promise<void>;
}

/** Where an engine reads its weights: host copies by prefix, and a token that changes when the decoder's weights do. */
export interface WeightSource {
  host(prefixes: readonly string[]): Map<string, HostTensor>;
  /** Objects whose identity changes whenever a prompt-encoder / mask-decoder weight is replaced (training). */
  decoderVersion(): readonly unknown[];
}

/** Everything but the vision encoder: what the prompt encoder + mask decoder graph reads. */
const DECODER_PREFIXES = SAM_PARTS.filter((p) => p !== 'vision_encoder').map((p) => `${p}.`);
export const decoderPrefixes = (): readonly string[] => DECODER_PREFIXES;

/** The weights of a tfjs SamModel (host copies are read when an ONNX graph is built), plus any kept on the host. */
export function modelWeightSource(model: SamModel, onHost?: Map<string, HostTensor>): WeightSource {
  return {
    host(prefixes) {
      const out = new Map<string, HostTensor>();
      for (const [name, t] of onHost ?? []) if (prefixes.some((p) => name.startsWith(p))) out.set(name, t);
      for (const [name, t] of model.weights) {
        if (!prefixes.some((p) => name.startsWith(p))) continue;
        out.set(name, { dtype: 'float32', shape: [...t.shape], data: t.dataSync() as Float32Array });
      }
      return out;
    },
    decoderVersion: () => [...model.weights].filter(([n]) => DECODER_PREFIXES.some((p) => n.startsWith(p))).map(([, t]) => t),
  };
}

/** Fixed host weights (a checkpoint read from disk). */
export function hostWeightSource(weights: Map<string, HostTensor>): WeightSource {
  const version = [weights];
  return {
    host(prefixes) {
      return new Map([...weights].filter(([n]) => prefixes.some((p) => n.startsWith(p))));
    },
    decoderVersion: () => version,
  };
}

/** The tfjs engine: the SamModel graph (as used for training). */
export class TfjsInference implements SamInference {
  readonly engine = 'tfjs' as const;
  constructor(readonly model: SamModel) {}

  async embed(pixelValues: HostArray): Promise<HostArray> {
    const e = tf.tidy(() => this.model.imageEmbeddingsNHWC(tf.tensor4d(pixelValues.data, pixelValues.shape as [number, number, number, number])));
    try {
      return { data: (await e.data()) as Float32Array, shape: [...e.shape] };
    } finally {
      e.dispose();
    }
  }

  async decode(inp: DecodeInputs): Promise<DecodeResult> {
    const t = (a?: HostArray<Float32Array | Int32Array>) => (a ? tf.tensor(a.data, a.shape, a.data instanceof Int32Array ? 'int32' : 'float32') : undefined);
    const emb = t(inp.embeddingsNHWC) as tf.Tensor4D;
    const prompts = { inputPoints: t(inp.inputPoints), inputLabels: t(inp.inputLabels), inputBoxes: t(inp.inputBoxes), inputMasks: t(inp.inputMasks) as tf.Tensor4D | undefined };
    try {
      const out = this.model.decode(emb, prompts, inp.multimask);
      try {
        return {
          predMasks: { data: (await out.predMasks.data()) as Float32Array, shape: [...out.predMasks.shape] },
          iouScores: { data: (await out.iouScores.data()) as Float32Array, shape: [...out.iouScores.shape] },
        };
      } finally {
        tf.dispose([out.predMasks, out.iouScores]);
      }
    } finally {
      tf.dispose([emb, ...Object.values(prompts).filter((x): x is tf.Tensor => !!x)]);
    }
  }

  async promptEmbeddings(inp: Omit<DecodeInputs, 'multimask'>): Promise<{ sparse?: HostArray; dense: HostArray }> {
    const t = (a?: HostArray<Float32Array | Int32Array>) => (a ? tf.tensor(a.data, a.shape, a.data instanceof Int32Array ? 'int32' : 'float32') : undefined);
    const prompts = { inputPoints: t(inp.inputPoints), inputLabels: t(inp.inputLabels), inputBoxes: t(inp.inputBoxes), inputMasks: t(inp.inputMasks) as tf.Tensor4D | undefined };
    const pe = this.model.promptEncoder(inp.embeddingsNHWC.shape[0], prompts);
    const dense = tf.tidy(() => tf.transpose(denseEmbeddingsFull(pe.dense, this.model.config), [0, 3, 1, 2]));
    try {
      const hasPrompt = !!(inp.inputPoints || inp.inputBoxes);
      return {
        sparse: hasPrompt ? { data: (await pe.sparse.data()) as Float32Array, shape: [...pe.sparse.shape] } : undefined,
        dense: { data: (await dense.data()) as Float32Array, shape: [...dense.shape] },
      };
    } finally {
      tf.dispose([pe.sparse, pe.dense, dense, ...Object.values(prompts).filter((x): x is tf.Tensor => !!x)]);
    }
  }

  async dispose(): Promise<void> {}
}

export interface EngineChoice { name: EngineName; reason: string }

export function parseEngineName(s: string): EngineName {
  const n = s.trim().toLowerCase();
  if (n === 'onnx' || n === 'ort' || n === 'onnxruntime') return 'onnx';
  if (n === 'tfjs' || n === 'tf') return 'tfjs';
  throw new Error(`unknown engine "${s}": use onnx or tfjs`);
}

/**
 * Pick the inference engine: `requested` (--engine) or FEDSAM_ENGINE forces one (onnx failing to load is then an
 * error); otherwise onnx where onnxruntime-node loads, else tfjs, with the reason.
 */
export function chooseEngine(requested?: string): EngineChoice {
  const forced = requested ?? (process.env.FEDSAM_ENGINE || undefined);
  const by = requested ? '--engine' : 'FEDSAM_ENGINE';
  if (forced) {
    const name = parseEngineName(forced);
    if (name === 'onnx') {
      const { error } = loadOrt();
      if (error) throw new Error(`engine onnx was requested (${by}) but ONNX Runtime cannot start: ${error}; use --engine tfjs`);
      return { name, reason: `requested by ${by} (onnxruntime-node ${ortVersion()})` };
    }
    return { name, reason: `requested by ${by}` };
  }
  const { error } = loadOrt();
  if (error) return { name: 'tfjs', reason: `ONNX Runtime unavailable (${error}); falling back to tfjs` };
  return { name: 'onnx', reason: `default (onnxruntime-node ${ortVersion()})` };
}

let chosen: EngineChoice | undefined;

/** The process-wide engine choice (set by the CLI's --engine; chooseEngine() on first use otherwise). */
export function currentEngine(): EngineChoice {
  return (chosen ??= chooseEngine());
}

export function setEngine(choice: EngineChoice): void {
  chosen = choice;
}
