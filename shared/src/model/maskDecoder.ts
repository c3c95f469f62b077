// SAM mask decoder (HF SamMaskDecoder): IoU token + mask tokens, SamTwoWayTransformer (SamTwoWayAttentionBlock x N,
// SamAttention with downsampling), final token-to-image attention, 4x upscaling, hypernetwork MLPs and the IoU head
// (SamFeedForward). NHWC inside; names: checkpoint/keys.ts.
// This is the only part FedSAM trains, so everything here is differentiable and wasm-friendly (ops.ts):
//   - one (image, prompt) pair at a time, all 2-D: tfjs-wasm has no fast batched product, and the decoder's
//     loss is a mean over samples, so a batch is a loop (the training step loops outside, see train/step.ts);
//   - all heads at once through block-diagonal token matrices (no head split/merge transposes, no batched
//     products), and the attention over the 4096 image tokens is re-associated so the image-side q/k/v
//     projections are never materialised: e.g. token->image scores = (Q_bd·W_k)·Kimgᵀ + Q_bd·b_k, output
//     (P·Vimg)·W_vᵀ + b_v (rows of P sum to 1). Same values up to float rounding;
//   - the upscaling runs in a "blocked" pixel order (ops.convTranspose2x2Blocked); the spatial low-res mask is
//     one rearrangement at the end (blockedToSpatial), and the training loss skips it (the loss is a sum over pixels).
import * as tf from '@tensorflow/tfjs';
import type { SamConfig } from '../config.ts';
import { attentionKeys, biasOf, DECODER_KEYS, feedForwardKeys, twoWayBlockKeys, weightOf } from '../checkpoint/keys.ts';
import { type Weights, param, linearP, layerNormP, activation, gelu, matMul2d, biasAdd, convTranspose2x2Blocked, t2 } from './ops.ts';

type AttentionKeys = ReturnType<typeof attentionKeys>;

/** torch.nn.LayerNorm's default eps, used by HF for transformer.layer_norm_final_attn. */
const TORCH_LN_EPS = 1e-5;

/** [heads, 1, inner] 0/1 mask selecting each head's columns. */
function headMask(heads: number, inner: number, scale = 1): tf.Tensor3D {
  const d = inner / heads;
  const m = new Float32Array(heads * inner);
  for (let h = 0; h < heads; h++) m.fill(scale, h * inner + h * d, h * inner + (h + 1) * d);
  return tf.tensor3d(m, [heads, 1, inner]);
}

/** x [T, inner] -> [heads·T, inner]: row (h, i) holds head h's columns of x[i]·scale, zeros elsewhere. */
function blockDiag(x: tf.Tensor, heads: number, scale = 1): tf.Tensor2D {
  const [T, inner] = x.shape;
  return tf.reshape(tf.mul(tf.reshape(x, [1, T, inner]), headMask(heads, inner, scale)), [heads * T, inner]) as tf.Tensor2D;
}

/** y [heads·T, inner] -> [T, inner]: row i takes head h's columns from row (h, i). */
function blockCollect(y: tf.Tensor, heads: number): tf.Tensor2D {
  const [HT, inner] = y.shape;
  return tf.sum(tf.mul(tf.reshape(y, [heads, HT / heads, inner]), headMask(heads, inner)), 0) as tf.Tensor2D;
}

/** HF SamAttention between token sets (all small): q [Tq, C], k/v [Tk, C] -> [Tq, C]. */
function tokenAttention(weights: Weights, K: AttentionKeys, heads: number, q: tf.Tensor, k: tf.Tensor, v: tf.Tensor): tf.Tensor2D {
  return tf.tidy(() => {
    const qp = linearP(weights, K.q, q);
    const kp = linearP(weights, K.k, k);
    const vp = linearP(weights, K.v, v);
    const d = qp.shape[1]! / heads;
    const s = matMul2d(blockDiag(qp, heads, 1 / Math.sqrt(d)), kp, false, true); // [H·Tq, Tk]
    const o = matMul2d(tf.softmax(s), vp); // [H·Tq, inner]
    return linearP(weights, K.out, blockCollect(o, heads)) as tf.Tensor2D;
  });
}

/** HF SamAttention from tokens q [T, C] to the image: keys kImg [N, C], values vImg [N, C] -> [T, C]. */
function tokenToImageAttention(weights: Weights, K: AttentionKeys, heads: number, q: tf.Tensor, kImg: tf.Tensor, vImg: tf.Tensor): tf.Tensor2D {
  return tf.tidy(() => {
    const qp = linearP(weights, K.q, q); // [T, inner]
    const inner = qp.shape[1]!;
    const qbd = blockDiag(qp, heads, 1 / Math.sqrt(inner / heads)); // [H·T, inner]
    const a = matMul2d(qbd, param(weights, weightOf(K.k))); // [H·T, C]
    const c = matMul2d(qbd, tf.reshape(param(weights, biasOf(K.k)), [inner, 1])); // [H·T, 1]
    const p = tf.softmax(tf.add(matMul2d(a, kImg, false, true), c)); // [H·T, N]
    const m = matMul2d(p, vImg); // [H·T, C]
    const o = linearP(weights, K.v, m); // [H·T, inner]
    return linearP(weights, K.out, blockCollect(o, heads)) as tf.Tensor2D;
  });
}

/** HF SamAttention from the image qImg [N, C] to tokens: keys k [T, C], values v [T, C] -> [N, C]. */
function imageToTokenAttention(weights: Weights, K: AttentionKeys, heads: number, qImg: tf.Tensor, k: tf.Tensor, v: tf.Tensor): tf.Tensor2D {
  return tf.tidy(() => {
    const kp = linearP(weights, K.k, k); // [T, inner]
    const vp = linearP(weights, K.v, v);
    const [T, inner] = kp.shape as [number, number];
    const N = qImg.shape[0];
    const kbd = blockDiag(kp, heads, 1 / Math.sqrt(inner / heads)); // [H·T, inner]
    const g = matMul2d(kbd, param(weights, weightOf(K.q))); // [H·T, C]
    const c = matMul2d(tf.reshape(param(weights, biasOf(K.q)), [1, inner]), kbd, false, true); // [1, H·T]
    const s = biasAdd(matMul2d(qImg, g, false, true), tf.reshape(c, [heads * T])); // [N, H·T]
    const p = tf.reshape(tf.softmax(tf.reshape(s, [N, heads, T])), [N, heads * T]);
    const u = matMul2d(blockDiag(vp, heads), param(weights, weightOf(K.out)), false, true); // [H·T, C]
    return biasAdd(matMul2d(p, u), param(weights, biasOf(K.out))) as tf.Tensor2D;
  });
}

/** HF SamTwoWayAttentionBlock: token self-attention, token->image, MLP, image->token. queries [T, C], keys [N, C]. */
function twoWayBlock(weights: Weights, config: SamConfig, i: number, queries: tf.Tensor, keys: tf.Tensor,
  queryPe: tf.Tensor, keyPe: tf.Tensor): [tf.Tensor2D, tf.Tensor2D] {
  return tf.tidy(() => {
    const d = config.decoder;
    const B = twoWayBlockKeys(i);
    const eps = d.layer_norm_eps;
    const heads = d.num_attention_heads;
    if (i === 0) {
      queries = tokenAttention(weights, B.selfAttn, heads, queries, queries, queries); // skip_first_layer_pe: no residual
    } else {
      const q = tf.add(queries, queryPe);
      queries = tf.add(queries, tokenAttention(weights, B.selfAttn, heads, q, q, queries));
    }
    queries = layerNormP(weights, B.layerNorm1, queries, eps);

    let q = tf.add(queries, queryPe);
    const k = tf.add(keys, keyPe); // also the image->token queries below (keys do not change in between)
    queries = tf.add(queries, tokenToImageAttention(weights, B.crossAttnTokenToImage, heads, q, k, keys));
    queries = layerNormP(weights, B.layerNorm2, queries, eps);

    const mlp = linearP(weights, B.mlp.lin2, activation(d.hidden_act, linearP(weights, B.mlp.lin1, queries)));
    queries = layerNormP(weights, B.layerNorm3, tf.add(queries, mlp), eps);

    q = tf.add(queries, queryPe);
    keys = tf.add(keys, imageToTokenAttention(weights, B.crossAttnImageToToken, heads, k, q, queries));
    keys = layerNormP(weights, B.layerNorm4, keys, eps);
    return [queries as tf.Tensor2D, keys as tf.Tensor2D];
  });
}

/** HF SamTwoWayTransformer for one sample: tokens [T, C], image [N, C], image PE [N, C] -> (tokens, image). */
export function twoWayTransformer2d(weights: Weights, config: SamConfig, tokens: tf.Tensor2D, image: tf.Tensor2D, imagePe: tf.Tensor2D): [tf.Tensor2D, tf.Tensor2D] {
  return tf.tidy(() => {
    let queries: tf.Tensor2D = tokens;
    let keys: tf.Tensor2D = image;
    for (let i = 0; i < config.decoder.num_hidden_layers; i++) {
      [queries, keys] = twoWayBlock(weights, config, i, queries, keys, tokens, imagePe);
    }
    const q = tf.add(queries, tokens);
    const k = tf.add(keys, imagePe);
    const T = DECODER_KEYS.transformer;
    const attn = tokenToImageAttention(weights, T.finalAttnTokenToImage, config.decoder.num_attention_heads, q, k, keys);
    queries = layerNormP(weights, T.layerNormFinalAttn, tf.add(queries, attn), TORCH_LN_EPS) as tf.Tensor2D;
    return [queries, keys];
  });
}

/** HF SamFeedForward: proj_in, ReLU, (layers, ReLU)*, proj_out. */
function feedForward(weights: Weights, K: ReturnType<typeof feedForwardKeys>, x: tf.Tensor): tf.Tensor {
  let h = tf.relu(linearP(weights, K.projIn, x));
  for (const l of K.layers) h = tf.relu(linearP(weights, l, h));
  return linearP(weights, K.projOut, h);
}

export interface DecodeOneInputs {
  /** [N, C] image embedding + dense prompt embedding, N = h·w in row-major (y, x) order. */
  image: tf.Tensor2D;
  /** [N, C] image-wide positional embedding. */
  pos: tf.Tensor2D;
  /** [n, C] sparse prompt tokens, or undefined for none. */
  sparse?: tf.Tensor2D;
  /** Mask tokens whose masks are returned: [0] (multimask off) or [1..num_multimask_outputs]. */
  selected: number[];
  /** Run the IoU head (default true). The training loss does not need it. */
  iou?: boolean;
}

export interface DecodeOneOutputs {
  /** [16N, k] low-res mask logits in blocked pixel order (see blockedToSpatial). */
  logitsBlocked: tf.Tensor2D;
  /** [1, k] predicted IoU of the selected masks (when requested). */
  iou?: tf.Tensor2D;
}

/** Mask tokens returned for multimask on / off (HF slicing). */
export function selectedMaskTokens(config: SamConfig, multimaskOutput: boolean): number[] {
  return multimaskOutput ? Array.from({ length: config.decoder.num_multimask_outputs }, (_, i) => i + 1) : [0];
}

/** The mask decoder for one (image, prompt) pair, differentiable in `weights`. */
export function decodeOne(weights: Weights, config: SamConfig, inp: DecodeOneInputs): DecodeOneOutputs {
  return tf.tidy(() => {
    const d = config.decoder;
    const C = d.hidden_size;
    const D = DECODER_KEYS;
    const outputTokens = tf.concat([param(weights, weightOf(D.iouToken)), param(weights, weightOf(D.maskTokens))], 0);
    const tokens = (inp.sparse ? tf.concat([outputTokens, inp.sparse], 0) : outputTokens) as tf.Tensor2D;
    const [hs, keys] = twoWayTransformer2d(weights, config, tokens, inp.image, inp.pos);

    // Upscale (blocked order): two 2x2 stride-2 transposed convs with LayerNorm + GELU, then GELU.
    let up = convTranspose2x2Blocked(keys, param(weights, weightOf(D.upscaleConv1)), param(weights, biasOf(D.upscaleConv1)));
    up = gelu(layerNormP(weights, D.upscaleLayerNorm, up, d.layer_norm_eps)) as tf.Tensor2D;
    up = gelu(convTranspose2x2Blocked(up, param(weights, weightOf(D.upscaleConv2)), param(weights, biasOf(D.upscaleConv2)))) as tf.Tensor2D;

    // Only the mask tokens that are returned run through their hypernetwork MLPs (same outputs as HF's slice).
    const hyper = inp.selected.map((t) => feedForward(weights, D.hypernetworkMlp(t), tf.slice(hs, [1 + t, 0], [1, C])));
    const hyperIn = hyper.length === 1 ? hyper[0] : tf.concat(hyper, 0); // [k, C/8]
    const out: DecodeOneOutputs = { logitsBlocked: matMul2d(up, hyperIn, false, true) }; // [16N, k]
    if (inp.iou ?? true) {
      const iouAll = feedForward(weights, D.iouPredictionHead(d.iou_head_depth), tf.slice(hs, [0, 0], [1, C])); // [1, nMaskTokens]
      out.iou = tf.slice(iouAll, [0, inp.selected[0]], [1, inp.selected.length]) as tf.Tensor2D;
    }
    return out as any;
  }) as unknown as DecodeOneOutputs;
}

/**
 * Blocked pixel order -> spatial: m [16·h·w, k] with rows (y, x, kh1, kw1, kh2, kw2) -> [k, 4h, 4w] where
 * row = 4y + 2kh1 + kh2, col = 4x + 2kw1 + kw2. Differentiable (two rank-4 transposes).
 */
export function blockedToSpatial(m: tf.Tensor2D, h: number, w: number): tf.Tensor3D {
  const k = m.shape[1];
  return tf.tidy(() => {
    const a = tf.transpose(tf.reshape(t2(m), [k * h * w * 2, 2, 2, 2]), [0, 2, 1, 3]); // (k,y,x,kh1 | kh2, kw1, kw2)
    return tf.reshape(tf.transpose(tf.reshape(a, [k * h, w, 4, 4]), [0, 2, 1, 3]), [k, 4 * h, 4 * w]) as tf.Tensor3D;
  });
}

/** Inverse of blockedToSpatial for one map: [4h, 4w] (or any [..., 4h, 4w] with one map) -> [16·h·w] blocked. */
export function spatialToBlocked(x: tf.Tensor, h: number, w: number): tf.Tensor1D {
  return tf.tidy(() => {
    const a = tf.transpose(tf.reshape(x, [h, 4, w, 4]), [0, 2, 1, 3]); // (y, x, kh1kh2, kw1kw2)
    return tf.reshape(tf.transpose(tf.reshape(a, [h * w * 2, 2, 2, 2]), [0, 2, 1, 3]), [16 * h * w]) as tf.Tensor1D;
  });
}

export interface MaskDecoderInputs {
  /** [B, h, w, C] image embeddings (NHWC). */
  imageEmbeddings: tf.Tensor4D;
  /** [1, h, w, C] image-wide positional embeddings (NHWC). */
  imagePositionalEmbeddings: tf.Tensor4D;
  /** [B, pb, n, C] */
  sparse: tf.Tensor4D;
  /** [B, h, w, C], or [B, 1, 1, C] when it is the same everywhere */
  dense: tf.Tensor4D;
  multimaskOutput: boolean;
}

export interface MaskDecoderOutputs {
  /** [B, pb, k, 4h, 4w] low-res mask logits (HF pred_masks). */
  predMasks: tf.Tensor;
  /** [B, pb, k] (HF iou_scores). */
  iouScores: tf.Tensor3D;
}

/**
 * Sample b's image tokens [h·w, C]: its embedding plus its dense prompt embedding ([B, h, w, C], or [B | 1, 1, 1, C]
 * when it is the same everywhere: broadcast).
 */
export function imageTokens(embeddingsNHWC: tf.Tensor4D, dense: tf.Tensor4D, b: number): tf.Tensor2D {
  const [B, h, w, C] = embeddingsNHWC.shape;
  const emb = tf.reshape(B === 1 ? embeddingsNHWC : tf.slice(embeddingsNHWC, [b, 0, 0, 0], [1, h, w, C]), [h * w, C]);
  const d = dense.shape[0] === 1 ? dense : tf.slice(dense, [b, 0, 0, 0], [1, ...dense.shape.slice(1)]);
  return tf.add(emb, tf.reshape(d, [-1, C])) as tf.Tensor2D;
}

/** HF SamMaskDecoder.forward, with multimask selection as HF does (k = 3 or 1). */
export function maskDecoder(weights: Weights, config: SamConfig, inp: MaskDecoderInputs): MaskDecoderOutputs {
  return tf.tidy(() => {
    const C = config.decoder.hidden_size;
    const [B, h, w] = inp.imageEmbeddings.shape;
    const [, pb, n] = inp.sparse.shape;
    const N = h * w;
    const selected = selectedMaskTokens(config, inp.multimaskOutput);
    const k = selected.length;
    // HF drops the prompt tokens altogether when every sparse embedding is zero (no point, no box).
    const sparseSum = tf.tidy(() => tf.sum(inp.sparse).dataSync()[0]);
    const pos = tf.reshape(inp.imagePositionalEmbeddings, [N, C]) as tf.Tensor2D;
    const masks: tf.Tensor[] = [];
    const ious: tf.Tensor[] = [];
    for (let bi = 0; bi < B; bi++) {
      const image = imageTokens(inp.imageEmbeddings, inp.dense, bi);
      for (let pj = 0; pj < pb; pj++) {
        const sparse = sparseSum !== 0 ? tf.reshape(tf.slice(inp.sparse, [bi, pj, 0, 0], [1, 1, n, C]), [n, C]) as tf.Tensor2D : undefined;
        const out = decodeOne(weights, config, { image, pos, sparse, selected });
        masks.push(blockedToSpatial(out.logitsBlocked, h, w));
        ious.push(out.iou!);
      }
    }
    const predMasks = tf.reshape(masks.length === 1 ? masks[0] : tf.stack(masks), [B, pb, k, 4 * h, 4 * w]);
    const iouScores = tf.reshape(ious.length === 1 ? ious[0] : tf.concat(ious, 0), [B, pb, k]) as tf.Tensor3D;
    return { predMasks, iouScores };
  });
}
