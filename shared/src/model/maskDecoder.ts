// SAM mask decoder (HF SamMaskDecoder): IoU token + mask tokens, TwoWayTransformer with attention downsampling,
// final token-to-image attention, 4x upscaling, hypernetwork MLPs and the IoU head. NHWC inside.
// This is the only part FedSAM trains, so everything here is differentiable and wasm-friendly (ops.ts).
import * as tf from '@tensorflow/tfjs';
import type { SamConfig } from '../config.ts';
import { type Weights, param, linearP, layerNormP, activation, convTranspose2x2, matMul, gelu } from './ops.ts';

/** torch.nn.LayerNorm's default eps, used by HF for transformer.layer_norm_final_attn. */
const TORCH_LN_EPS = 1e-5;

/** SamTwoWayTransformerAttention: q/k/v projections to hidden/downsample, heads, softmax(qkᵀ/√d)v, out_proj. */
function attention(weights: Weights, prefix: string, heads: number, q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D): tf.Tensor3D {
  return tf.tidy(() => {
    const [b, nq] = q.shape;
    const nk = k.shape[1];
    const qp = linearP(weights, `${prefix}.q_proj`, q);
    const kp = linearP(weights, `${prefix}.k_proj`, k);
    const vp = linearP(weights, `${prefix}.v_proj`, v);
    const inner = qp.shape[2]!;
    const d = inner / heads;
    // separate heads: [b, n, heads, d] -> [b·heads, n, d]
    const sep = (t: tf.Tensor, n: number) => tf.reshape(tf.transpose(tf.reshape(t, [b, n, heads, d]), [0, 2, 1, 3]), [b * heads, n, d]);
    const qh = sep(qp, nq);
    const kh = sep(kp, nk);
    const vh = sep(vp, nk);
    const scores = tf.mul(matMul(qh, tf.transpose(kh, [0, 2, 1])), 1 / Math.sqrt(d));
    const out = matMul(tf.softmax(scores), vh); // [b·heads, nq, d]
    const merged = tf.reshape(tf.transpose(tf.reshape(out, [b, heads, nq, d]), [0, 2, 1, 3]), [b, nq, inner]);
    return linearP(weights, `${prefix}.out_proj`, merged) as tf.Tensor3D;
  });
}

/** SamTwoWayAttentionBlock: token self-attention, token->image, MLP, image->token. */
function twoWayBlock(weights: Weights, config: SamConfig, i: number, queries: tf.Tensor3D, keys: tf.Tensor3D,
  queryPe: tf.Tensor3D, keyPe: tf.Tensor3D): [tf.Tensor3D, tf.Tensor3D] {
  return tf.tidy(() => {
    const d = config.decoder;
    const p = `mask_decoder.transformer.layers.${i}`;
    const eps = d.layer_norm_eps;
    const heads = d.num_attention_heads;
    if (i === 0) {
      queries = attention(weights, `${p}.self_attn`, heads, queries, queries, queries); // skip_first_layer_pe: no residual
    } else {
      const q = tf.add(queries, queryPe) as tf.Tensor3D;
      queries = tf.add(queries, attention(weights, `${p}.self_attn`, heads, q, q, queries)) as tf.Tensor3D;
    }
    queries = layerNormP(weights, `${p}.layer_norm1`, queries, eps) as tf.Tensor3D;

    let q = tf.add(queries, queryPe) as tf.Tensor3D;
    let k = tf.add(keys, keyPe) as tf.Tensor3D;
    queries = tf.add(queries, attention(weights, `${p}.cross_attn_token_to_image`, heads, q, k, keys)) as tf.Tensor3D;
    queries = layerNormP(weights, `${p}.layer_norm2`, queries, eps) as tf.Tensor3D;

    const mlp = linearP(weights, `${p}.mlp.lin2`, activation(d.hidden_act, linearP(weights, `${p}.mlp.lin1`, queries)));
    queries = layerNormP(weights, `${p}.layer_norm3`, tf.add(queries, mlp), eps) as tf.Tensor3D;

    q = tf.add(queries, queryPe) as tf.Tensor3D;
    k = tf.add(keys, keyPe) as tf.Tensor3D;
    keys = tf.add(keys, attention(weights, `${p}.cross_attn_image_to_token`, heads, k, q, queries)) as tf.Tensor3D;
    keys = layerNormP(weights, `${p}.layer_norm4`, keys, eps) as tf.Tensor3D;
    return [queries, keys];
  });
}

/** SamTwoWayTransformer: tokens [b, T, C], image [b, hw, C], image PE [b, hw, C] -> (tokens, image). */
export function twoWayTransformer(weights: Weights, config: SamConfig, tokens: tf.Tensor3D, image: tf.Tensor3D, imagePe: tf.Tensor3D): [tf.Tensor3D, tf.Tensor3D] {
  return tf.tidy(() => {
    let queries = tokens;
    let keys = image;
    for (let i = 0; i < config.decoder.num_hidden_layers; i++) {
      [queries, keys] = twoWayBlock(weights, config, i, queries, keys, tokens, imagePe);
    }
    const q = tf.add(queries, tokens) as tf.Tensor3D;
    const k = tf.add(keys, imagePe) as tf.Tensor3D;
    const attn = attention(weights, 'mask_decoder.transformer.final_attn_token_to_image', config.decoder.num_attention_heads, q, k, keys);
    queries = layerNormP(weights, 'mask_decoder.transformer.layer_norm_final_attn', tf.add(queries, attn), TORCH_LN_EPS) as tf.Tensor3D;
    return [queries, keys];
  });
}

/** SamFeedForward: proj_in, ReLU, (layers, ReLU)*, proj_out. */
function feedForward(weights: Weights, prefix: string, depth: number, x: tf.Tensor): tf.Tensor {
  let h = tf.relu(linearP(weights, `${prefix}.proj_in`, x));
  for (let j = 0; j < depth - 2; j++) h = tf.relu(linearP(weights, `${prefix}.layers.${j}`, h));
  return linearP(weights, `${prefix}.proj_out`, h);
}

export interface MaskDecoderInputs {
  /** [B, h, w, C] image embeddings (NHWC). */
  imageEmbeddings: tf.Tensor4D;
  /** [1, h, w, C] image-wide positional embeddings (NHWC). */
  imagePositionalEmbeddings: tf.Tensor4D;
  /** [B, pb, n, C] */
  sparse: tf.Tensor4D;
  /** [B, h, w, C] */
  dense: tf.Tensor4D;
  multimaskOutput: boolean;
}

export interface MaskDecoderOutputs {
  /** [B, pb, k, 4h, 4w] low-res mask logits (HF pred_masks). */
  predMasks: tf.Tensor;
  /** [B, pb, k] (HF iou_scores). */
  iouScores: tf.Tensor3D;
}

/** HF SamMaskDecoder.forward, with multimask selection as HF does (k = 3 or 1). */
export function maskDecoder(weights: Weights, config: SamConfig, inp: MaskDecoderInputs): MaskDecoderOutputs {
  return tf.tidy(() => {
    const d = config.decoder;
    const C = d.hidden_size;
    const [B, h, w] = inp.imageEmbeddings.shape;
    const pb = inp.sparse.shape[1];
    const nMaskTokens = d.num_multimask_outputs + 1;
    const b = B * pb;

    const outputTokens = tf.concat([
      param(weights, 'mask_decoder.iou_token.weight'),
      param(weights, 'mask_decoder.mask_tokens.weight'),
    ], 0); // [1 + nMaskTokens, C]
    let tokens = tf.reshape(outputTokens, [1, 1 + nMaskTokens, C]) as tf.Tensor3D;
    if (b > 1) tokens = tf.tile(tokens, [b, 1, 1]);
    // HF drops the prompt tokens altogether when every sparse embedding is zero (no point, no box).
    const sparseSum = tf.tidy(() => tf.sum(inp.sparse).dataSync()[0]);
    if (sparseSum !== 0) {
      tokens = tf.concat([tokens, tf.reshape(inp.sparse, [b, inp.sparse.shape[2], C])], 1);
    }
    // image + dense prompt, then repeat_interleave over the point batch
    let src = tf.add(inp.imageEmbeddings, inp.dense);
    let pos: tf.Tensor = inp.imagePositionalEmbeddings;
    src = tf.reshape(src, [B, 1, h * w, C]);
    if (pb > 1) src = tf.tile(src, [1, pb, 1, 1]);
    src = tf.reshape(src, [b, h * w, C]);
    pos = tf.reshape(pos, [1, h * w, C]); // broadcast over b where it is added

    const [hs, keys] = twoWayTransformer(weights, config, tokens, src as tf.Tensor3D, pos as tf.Tensor3D);
    const iouTokenOut = tf.reshape(tf.slice(hs, [0, 0, 0], [b, 1, C]), [b, C]);

    // Upscale: two 2x2 stride-2 transposed convs with LayerNorm + GELU, then GELU.
    let up = convTranspose2x2(tf.reshape(keys, [b, h, w, C]) as tf.Tensor4D,
      param(weights, 'mask_decoder.upscale_conv1.weight'), param(weights, 'mask_decoder.upscale_conv1.bias'));
    up = gelu(layerNormP(weights, 'mask_decoder.upscale_layer_norm', up, d.layer_norm_eps)) as tf.Tensor4D;
    up = gelu(convTranspose2x2(up, param(weights, 'mask_decoder.upscale_conv2.weight'), param(weights, 'mask_decoder.upscale_conv2.bias'))) as tf.Tensor4D;
    const c8 = up.shape[3];
    const H4 = up.shape[1];
    const W4 = up.shape[2];

    // Only the mask tokens that are returned are run through their hypernetwork MLPs (same outputs as HF's slice).
    const selected = inp.multimaskOutput ? Array.from({ length: d.num_multimask_outputs }, (_, i) => i + 1) : [0];
    const hyper = selected.map((t) => feedForward(weights, `mask_decoder.output_hypernetworks_mlps.${t}`, 3,
      tf.reshape(tf.slice(hs, [0, 1 + t, 0], [b, 1, C]), [b, C])));
    const k = selected.length;
    const hyperIn = tf.reshape(tf.stack(hyper, 2), [b, c8, k]); // [b, c8, k]
    // masks[b, t, n] = Σc hyper[b,t,c]·up[b,n,c]: compute up·hyperᵀ ([b, n, k]) then move k forward (k is small).
    const m = matMul(tf.reshape(up, [b, H4 * W4, c8]), hyperIn);
    const masks = k === 1 ? tf.reshape(m, [B, pb, 1, H4, W4]) : tf.reshape(tf.transpose(m, [0, 2, 1]), [B, pb, k, H4, W4]);

    const iouAll = feedForward(weights, 'mask_decoder.iou_prediction_head', d.iou_head_depth, iouTokenOut); // [b, nMaskTokens]
    const iou = tf.reshape(tf.slice(iouAll, [0, selected[0]], [b, k]), [B, pb, k]) as tf.Tensor3D;
    return { predMasks: masks, iouScores: iou };
  });
}
