// SAM prompt encoder (HF SamPromptEncoder + SamPositionalEmbedding): random-Fourier positional encoding shared
// with the image-wide positional embedding, point/box tokens, mask-prompt downscaling (SamMaskEmbedding), no-mask
// embedding. Names: checkpoint/keys.ts.
import * as tf from '@tensorflow/tfjs';
import type { SamConfig } from '../config.ts';
import { biasOf, PROMPT_KEYS, SHARED_POS_EMBED_KEY, weightOf } from '../checkpoint/keys.ts';
import { type Weights, param, layerNormP, activation, convPatchify, linear } from './ops.ts';

/** Labels a point may carry: 1 positive, 0 negative, -1 not-a-point (padding appended without a box), -10 HF processor padding. */
export const POINT_LABELS = [1, 0, -1, -10] as const;

/** HF SamPositionalEmbedding: random-Fourier encoding of coordinates already normalised to [0,1]: [..., 2] -> [..., C]. */
export function positionalEncoding(weights: Weights, coords01: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const g = param(weights, SHARED_POS_EMBED_KEY); // [2, C/2]
    const lead = coords01.shape.slice(0, -1) as number[];
    const c = tf.sub(tf.mul(tf.reshape(coords01, [-1, 2]), 2), 1);
    const proj = tf.mul(tf.matMul(c as tf.Tensor2D, g as tf.Tensor2D), 2 * Math.PI);
    const out = tf.concat([tf.sin(proj), tf.cos(proj)], -1);
    return tf.reshape(out, [...lead, out.shape[1]!]);
  });
}

/** HF get_image_wide_positional_embeddings, NHWC: [1, h, w, C]. */
export function imageWidePositionalEmbeddings(weights: Weights, config: SamConfig): tf.Tensor4D {
  const s = config.prompt.imageEmbeddingSize;
  const grid = new Float32Array(s * s * 2);
  for (let y = 0; y < s; y++) {
    for (let x = 0; x < s; x++) {
      grid[(y * s + x) * 2] = (x + 0.5) / s;
      grid[(y * s + x) * 2 + 1] = (y + 0.5) / s;
    }
  }
  return tf.tidy(() => tf.reshape(positionalEncoding(weights, tf.tensor(grid, [s, s, 2])), [1, s, s, -1]) as tf.Tensor4D);
}

export interface PromptInputs {
  /** [B, pb, N, 2] in model-input pixels (already rescaled by the processor). */
  inputPoints?: tf.Tensor;
  /** [B, pb, N] integer labels (1, 0, -1, -10). */
  inputLabels?: tf.Tensor | number[][][];
  /** [B, nb, 4] x1, y1, x2, y2 in model-input pixels. */
  inputBoxes?: tf.Tensor;
  /** [B, 1, 4h, 4w] mask logits (HF input_masks). */
  inputMasks?: tf.Tensor4D;
}

export interface PromptEmbeddings {
  /** [B, pb, n, C] (HF shape); all zeros [B,1,1,C] when there is no point or box. */
  sparse: tf.Tensor4D;
  /** [B, h, w, C] (NHWC; HF returns [B, C, h, w]), or [B, 1, 1, C] when it is the same everywhere (no mask prompt). */
  dense: tf.Tensor4D;
}

/** The dense embeddings at their full [B, h, w, C] size. */
export function denseEmbeddingsFull(dense: tf.Tensor4D, config: SamConfig): tf.Tensor4D {
  const s = config.prompt.imageEmbeddingSize;
  if (dense.shape[1] === s && dense.shape[2] === s) return dense.clone();
  return tf.tidy(() => tf.add(dense, tf.zeros([dense.shape[0], s, s, dense.shape[3]])) as tf.Tensor4D);
}

function labelsArray(labels: tf.Tensor | number[][][]): { values: Int32Array; shape: number[] } {
  if (Array.isArray(labels)) {
    const B = labels.length, pb = labels[0]?.length ?? 0, n = labels[0]?.[0]?.length ?? 0;
    return { values: Int32Array.from(labels.flat(2)), shape: [B, pb, n] };
  }
  return { values: Int32Array.from(labels.dataSync()), shape: labels.shape };
}

function embedPoints(weights: Weights, config: SamConfig, points: tf.Tensor, labels: tf.Tensor | number[][][], pad: boolean): tf.Tensor4D {
  const { values, shape } = labelsArray(labels);
  const [B, pb, n] = points.shape;
  if (shape[0] !== B || shape[1] !== pb || shape[2] !== n) {
    throw new Error(`input_labels shape [${shape}] must match input_points [${points.shape.slice(0, 3)}]`);
  }
  const nTok = pad ? n + 1 : n;
  // Per-token coefficients: keep the positional encoding, and which learned embedding to add.
  const keep = new Float32Array(B * pb * nTok);
  const coef = new Float32Array(B * pb * nTok * 3); // columns: not_a_point, point_embed.0, point_embed.1
  for (let i = 0; i < B * pb; i++) {
    for (let j = 0; j < nTok; j++) {
      const label = j < n ? values[i * n + j] : -1;
      const t = i * nTok + j;
      if (label === 1) { keep[t] = 1; coef[t * 3 + 2] = 1; }
      else if (label === 0) { keep[t] = 1; coef[t * 3 + 1] = 1; }
      else if (label === -1) { coef[t * 3] = 1; }
      else if (label === -10) { /* HF: an all-zero token, still attended to */ }
      else throw new Error(`point label ${label} is not one of 1 (positive), 0 (negative), -1 (not a point), -10 (padding)`);
    }
  }
  return tf.tidy(() => {
    let pts = tf.add(points, 0.5);
    if (pad) pts = tf.concat([pts, tf.zeros([B, pb, 1, 2])], 2);
    const size = config.prompt.image_size;
    const pe = positionalEncoding(weights, tf.div(pts, size)); // [B, pb, nTok, C]
    const C = pe.shape[3]!;
    const table = tf.concat([
      tf.reshape(param(weights, weightOf(PROMPT_KEYS.notAPointEmbed)), [1, C]),
      tf.reshape(param(weights, weightOf(PROMPT_KEYS.pointEmbed(0))), [1, C]),
      tf.reshape(param(weights, weightOf(PROMPT_KEYS.pointEmbed(1))), [1, C]),
    ], 0);
    const added = tf.matMul(tf.tensor2d(coef, [B * pb * nTok, 3]), table);
    const out = tf.add(tf.mul(tf.reshape(pe, [-1, C]), tf.tensor2d(keep, [B * pb * nTok, 1])), added);
    return tf.reshape(out, [B, pb, nTok, C]) as tf.Tensor4D;
  });
}

function embedBoxes(weights: Weights, config: SamConfig, boxes: tf.Tensor): tf.Tensor4D {
  return tf.tidy(() => {
    const [B, nb] = boxes.shape;
    const coords = tf.reshape(tf.div(tf.add(boxes, 0.5), config.prompt.image_size), [B, nb, 2, 2]);
    const pe = positionalEncoding(weights, coords); // [B, nb, 2, C]
    const C = pe.shape[3]!;
    const corners = tf.reshape(tf.concat([
      tf.reshape(param(weights, weightOf(PROMPT_KEYS.pointEmbed(2))), [1, C]),
      tf.reshape(param(weights, weightOf(PROMPT_KEYS.pointEmbed(3))), [1, C]),
    ], 0), [1, 1, 2, C]);
    return tf.add(pe, corners) as tf.Tensor4D;
  });
}

/** SamMaskEmbedding: [B, 1, 4h, 4w] mask logits -> [B, h, w, C]. */
function embedMask(weights: Weights, config: SamConfig, masks: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const K = PROMPT_KEYS.maskEmbed;
    const eps = config.prompt.layer_norm_eps;
    const act = config.prompt.hidden_act;
    let x = tf.transpose(masks, [0, 2, 3, 1]) as tf.Tensor4D;
    x = convPatchify(x, param(weights, weightOf(K.conv1)), param(weights, biasOf(K.conv1)), 2);
    x = activation(act, layerNormP(weights, K.layerNorm1, x, eps)) as tf.Tensor4D;
    x = convPatchify(x, param(weights, weightOf(K.conv2)), param(weights, biasOf(K.conv2)), 2);
    x = activation(act, layerNormP(weights, K.layerNorm2, x, eps)) as tf.Tensor4D;
    const w3 = param(weights, weightOf(K.conv3));
    const [B, h, w, c] = x.shape;
    const y = linear(tf.reshape(x, [B * h * w, c]), tf.reshape(w3, [w3.shape[0], c]), param(weights, biasOf(K.conv3)));
    return tf.reshape(y, [B, h, w, w3.shape[0]]) as tf.Tensor4D;
  });
}

/** HF SamPromptEncoder.forward. batchSize is the image batch B. */
export function promptEncoder(weights: Weights, config: SamConfig, batchSize: number, inputs: PromptInputs): PromptEmbeddings {
  const C = config.prompt.hidden_size;
  const parts: tf.Tensor4D[] = [];
  if (inputs.inputPoints) {
    if (!inputs.inputLabels) throw new Error('input_points were given without input_labels');
    if (inputs.inputPoints.rank !== 4) throw new Error(`input_points must be [B, point_batch, N, 2], got [${inputs.inputPoints.shape}]`);
    parts.push(embedPoints(weights, config, inputs.inputPoints, inputs.inputLabels, !inputs.inputBoxes));
  }
  if (inputs.inputBoxes) {
    if (inputs.inputBoxes.rank !== 3 || inputs.inputBoxes.shape[2] !== 4) throw new Error(`input_boxes must be [B, nb, 4], got [${inputs.inputBoxes.shape}]`);
    parts.push(embedBoxes(weights, config, inputs.inputBoxes));
  }
  if (parts.length === 2 && parts[0].shape[1] !== parts[1].shape[1]) {
    const n = parts[0].shape[1];
    parts.forEach((p) => p.dispose());
    throw new Error(`points have point_batch ${n} but boxes have ${inputs.inputBoxes!.shape[1]}: they must match`);
  }
  let sparse: tf.Tensor4D;
  if (parts.length === 0) sparse = tf.zeros([batchSize, 1, 1, C]);
  else if (parts.length === 1) sparse = parts[0];
  else {
    sparse = tf.concat(parts, 2);
    parts.forEach((p) => p.dispose());
  }
  // Without a mask prompt the dense embedding is no_mask_embed at every position: kept as [B, 1, 1, C] and
  // broadcast where it is added (tf.tile is slow on wasm). denseEmbeddingsFull() expands it for HF's shape.
  const dense = inputs.inputMasks
    ? embedMask(weights, config, inputs.inputMasks)
    : tf.tidy(() => tf.add(tf.zeros([batchSize, 1, 1, C]), tf.reshape(param(weights, weightOf(PROMPT_KEYS.noMaskEmbed)), [1, 1, 1, C])) as tf.Tensor4D);
  return { sparse, dense };
}
