// SamModel: the three parts wired like HF's SamModel, with HF tensor shapes at the API (NCHW, [B, pb, ...]).
// The vision encoder runs alone to produce embeddings; prompt encoder + mask decoder run from given embeddings.
import * as tf from '@tensorflow/tfjs';
import type { SamConfig } from '../config.ts';
import type { Weights } from './ops.ts';
import { visionEncoderNHWC } from './visionEncoder.ts';
import { promptEncoder, imageWidePositionalEmbeddings, type PromptInputs, type PromptEmbeddings } from './promptEncoder.ts';
import { maskDecoder, type MaskDecoderOutputs } from './maskDecoder.ts';

export interface SamForwardInputs extends PromptInputs {
  /** [B, 3, S, S] preprocessed pixels (HF pixel_values); or give imageEmbeddings. */
  pixelValues?: tf.Tensor4D;
  /** [B, C, h, w] (HF layout) image embeddings from getImageEmbeddings. */
  imageEmbeddings?: tf.Tensor4D;
  /** Same embeddings in NHWC [B, h, w, C] (what the cache stores; avoids a transpose). */
  imageEmbeddingsNHWC?: tf.Tensor4D;
  /** HF default: true. */
  multimaskOutput?: boolean;
}

export class SamModel {
  private pe?: tf.Tensor4D;
  constructor(readonly config: SamConfig, readonly weights: Weights) {}

  /** Build from host arrays (checkpoint loader output); every tensor becomes a tf.Tensor owned by the model. */
  static fromHost(config: SamConfig, host: Map<string, { shape: number[]; data: Float32Array | Int32Array | Uint8Array }>): SamModel {
    const w: Weights = new Map();
    for (const [name, t] of host) w.set(name, tf.tensor(t.data as Float32Array, t.shape, 'float32'));
    return new SamModel(config, w);
  }

  /** HF get_image_embeddings, NHWC [B, h, w, C]. */
  imageEmbeddingsNHWC(pixelValues: tf.Tensor4D): tf.Tensor4D {
    return visionEncoderNHWC(this.weights, this.config, pixelValues);
  }

  /** HF get_image_embeddings: [B, C, h, w]. */
  getImageEmbeddings(pixelValues: tf.Tensor4D): tf.Tensor4D {
    const e = this.imageEmbeddingsNHWC(pixelValues);
    const out = tf.transpose(e, [0, 3, 1, 2]) as tf.Tensor4D;
    e.dispose();
    return out;
  }

  /** Image-wide positional embeddings NHWC [1, h, w, C], computed once and cached. */
  positionalEmbeddingsNHWC(): tf.Tensor4D {
    if (!this.pe || this.pe.isDisposed) this.pe = tf.keep(imageWidePositionalEmbeddings(this.weights, this.config));
    return this.pe;
  }

  /** HF get_image_wide_positional_embeddings: [1, C, h, w]. */
  getImageWidePositionalEmbeddings(): tf.Tensor4D {
    return tf.tidy(() => tf.transpose(this.positionalEmbeddingsNHWC(), [0, 3, 1, 2]) as tf.Tensor4D);
  }

  promptEncoder(batchSize: number, prompts: PromptInputs): PromptEmbeddings {
    return promptEncoder(this.weights, this.config, batchSize, prompts);
  }

  /** Prompt encoder + mask decoder from NHWC embeddings; differentiable in the mask decoder weights. */
  decode(imageEmbeddingsNHWC: tf.Tensor4D, prompts: PromptInputs, multimaskOutput: boolean, weights: Weights = this.weights): MaskDecoderOutputs {
    return tf.tidy((): any => {
      const B = imageEmbeddingsNHWC.shape[0];
      const { sparse, dense } = promptEncoder(this.weights, this.config, B, prompts);
      return maskDecoder(weights, this.config, {
        imageEmbeddings: imageEmbeddingsNHWC,
        imagePositionalEmbeddings: this.positionalEmbeddingsNHWC(),
        sparse, dense, multimaskOutput,
      });
    }) as MaskDecoderOutputs;
  }

  /** HF SamModel.forward: pred_masks [B, pb, k, 4h, 4w], iou_scores [B, pb, k]. */
  forward(inp: SamForwardInputs): MaskDecoderOutputs {
    const multimask = inp.multimaskOutput ?? true;
    let nhwc: tf.Tensor4D;
    let owned = false;
    if (inp.imageEmbeddingsNHWC) nhwc = inp.imageEmbeddingsNHWC;
    else if (inp.imageEmbeddings) { nhwc = tf.transpose(inp.imageEmbeddings, [0, 2, 3, 1]); owned = true; }
    else if (inp.pixelValues) { nhwc = this.imageEmbeddingsNHWC(inp.pixelValues); owned = true; }
    else throw new Error('SamModel.forward needs pixelValues or imageEmbeddings');
    try {
      return this.decode(nhwc, inp, multimask);
    } finally {
      if (owned) nhwc.dispose();
    }
  }

  /** Names of the mask decoder's parameters (what trains and what travels). */
  decoderParameterNames(): string[] {
    return [...this.weights.keys()].filter((n) => n.startsWith('mask_decoder.')).sort();
  }

  dispose(): void {
    for (const t of this.weights.values()) t.dispose();
    this.weights.clear();
    this.pe?.dispose();
  }
}
