// SAM's ViT image encoder (HF SamVisionEncoder): patch embedding, absolute position embedding, windowed and global
// attention blocks with decomposed relative positions, and the convolutional neck. Frozen in FedSAM, so forward only.
import * as tf from '@tensorflow/tfjs';
import type { SamConfig } from '../config.ts';
import { type Weights, param, linearP, layerNormP, layerNorm, activation, convPatchify, matMul, linear } from './ops.ts';

/** Largest number of attention-score elements materialised at once (global attention at ViT-B is 12×4096×4096). */
const ATTN_CHUNK_ELEMENTS = 1 << 25;

/** HF get_rel_pos: relative position table [q, k, C] for query/key lengths, interpolating the table if needed. */
export function getRelPos(qSize: number, kSize: number, relPos: tf.Tensor2D): tf.Tensor3D {
  return tf.tidy(() => {
    const maxRelDist = 2 * Math.max(qSize, kSize) - 1;
    let table: tf.Tensor2D = relPos;
    if (relPos.shape[0] !== maxRelDist) {
      // F.interpolate(mode='linear', align_corners=False) along the length axis.
      const img = tf.reshape(relPos, [1, relPos.shape[0], 1, relPos.shape[1]]) as tf.Tensor4D;
      table = tf.reshape(tf.image.resizeBilinear(img, [maxRelDist, 1], false, true), [maxRelDist, relPos.shape[1]]);
    }
    const qScale = Math.max(kSize / qSize, 1);
    const kScale = Math.max(qSize / kSize, 1);
    const idx = new Int32Array(qSize * kSize);
    for (let i = 0; i < qSize; i++) {
      for (let j = 0; j < kSize; j++) idx[i * kSize + j] = Math.trunc(i * qScale - j * kScale + (kSize - 1) * kScale);
    }
    return tf.reshape(tf.gather(table, tf.tensor1d(idx, 'int32')), [qSize, kSize, table.shape[1]]) as tf.Tensor3D;
  });
}

/**
 * Multi-head self-attention with decomposed relative positions over a [B', h, w, C] grid (a window or the whole map).
 */
function visionAttention(weights: Weights, prefix: string, x: tf.Tensor4D, heads: number, useRelPos: boolean): tf.Tensor4D {
  const [Bp, h, w, C] = x.shape;
  const d = C / heads;
  const n = h * w;
  const scale = 1 / Math.sqrt(d);
  const qkv = linearP(weights, `${prefix}.qkv`, tf.reshape(x, [Bp * n, C])); // [B'n, 3C]
  // [B', n, 3, heads, d] -> [3, B', heads, n, d]
  const qkv5 = tf.transpose(tf.reshape(qkv, [Bp, n, 3, heads, d]), [2, 0, 3, 1, 4]);
  const [q, k, v] = tf.unstack(qkv5, 0).map((t) => tf.reshape(t, [Bp * heads, n, d]));
  let relH: tf.Tensor | undefined;
  let relW: tf.Tensor | undefined;
  if (useRelPos) {
    const Rh = getRelPos(h, h, param(weights, `${prefix}.rel_pos_h`) as tf.Tensor2D); // [h, h, d]
    const Rw = getRelPos(w, w, param(weights, `${prefix}.rel_pos_w`) as tf.Tensor2D); // [w, w, d]
    const BH = Bp * heads;
    const rq = tf.reshape(q, [BH, h, w, d]);
    // rel_h[b,y,x,k] = Σc rq[b,y,x,c]·Rh[y,k,c]
    const rqH = tf.reshape(tf.transpose(rq, [1, 0, 2, 3]), [h, BH * w, d]);
    relH = tf.transpose(tf.reshape(matMul(rqH, tf.transpose(Rh, [0, 2, 1])), [h, BH, w, h]), [1, 0, 2, 3]); // [BH,h,w,kh]
    const rqW = tf.reshape(tf.transpose(rq, [2, 0, 1, 3]), [w, BH * h, d]);
    relW = tf.transpose(tf.reshape(matMul(rqW, tf.transpose(Rw, [0, 2, 1])), [w, BH, h, w]), [1, 2, 0, 3]); // [BH,h,w,kw]
  }
  const kT = tf.transpose(k, [0, 2, 1]);
  const total = Bp * heads;
  const chunk = Math.max(1, Math.floor(ATTN_CHUNK_ELEMENTS / (n * n)));
  const outs: tf.Tensor[] = [];
  for (let s = 0; s < total; s += chunk) {
    const len = Math.min(chunk, total - s);
    outs.push(tf.tidy(() => {
      const qs = tf.slice(q, [s, 0, 0], [len, n, d]);
      let attn = tf.mul(matMul(qs, tf.slice(kT, [s, 0, 0], [len, d, n])), scale);
      if (relH && relW) {
        const a5 = tf.reshape(attn, [len, h, w, h, w]);
        const rh = tf.reshape(tf.slice(relH, [s, 0, 0, 0], [len, h, w, h]), [len, h, w, h, 1]);
        const rw = tf.reshape(tf.slice(relW, [s, 0, 0, 0], [len, h, w, w]), [len, h, w, 1, w]);
        attn = tf.reshape(tf.add(tf.add(a5, rh), rw), [len, n, n]);
      }
      return matMul(tf.softmax(attn), tf.slice(v, [s, 0, 0], [len, n, d]));
    }));
  }
  const o = outs.length === 1 ? outs[0] : tf.concat(outs, 0); // [B'·heads, n, d]
  // [B', heads, h, w, d] -> [B', h, w, heads, d]
  const merged = tf.reshape(tf.transpose(tf.reshape(o, [Bp, heads, h, w, d]), [0, 2, 3, 1, 4]), [Bp * n, C]);
  return tf.reshape(linearP(weights, `${prefix}.proj`, merged), [Bp, h, w, C]) as tf.Tensor4D;
}

function windowPartition(x: tf.Tensor4D, win: number): { windows: tf.Tensor4D; Hp: number; Wp: number } {
  const [B, H, W, C] = x.shape;
  const padH = (win - (H % win)) % win;
  const padW = (win - (W % win)) % win;
  const xp = padH || padW ? tf.pad(x, [[0, 0], [0, padH], [0, padW], [0, 0]]) : x;
  const Hp = H + padH;
  const Wp = W + padW;
  const w6 = tf.reshape(xp, [B, Hp / win, win, Wp / win, win, C]);
  return { windows: tf.reshape(tf.transpose(w6, [0, 1, 3, 2, 4, 5]), [-1, win, win, C]) as tf.Tensor4D, Hp, Wp };
}

function windowUnpartition(windows: tf.Tensor4D, win: number, Hp: number, Wp: number, H: number, W: number): tf.Tensor4D {
  const C = windows.shape[3];
  const B = windows.shape[0] / ((Hp / win) * (Wp / win));
  const x6 = tf.reshape(windows, [B, Hp / win, Wp / win, win, win, C]);
  const x = tf.reshape(tf.transpose(x6, [0, 1, 3, 2, 4, 5]), [B, Hp, Wp, C]) as tf.Tensor4D;
  return Hp > H || Wp > W ? tf.slice(x, [0, 0, 0, 0], [B, H, W, C]) : x;
}

/** One ViT block: x + attn(norm1(x)) (windowed unless global), then x + mlp(norm2(x)). */
export function visionLayer(weights: Weights, config: SamConfig, i: number, x: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const v = config.vision;
    const prefix = `vision_encoder.layers.${i}`;
    const win = v.global_attn_indexes.includes(i) ? 0 : v.window_size;
    const [B, H, W, C] = x.shape;
    let h = layerNormP(weights, `${prefix}.layer_norm1`, x, v.layer_norm_eps) as tf.Tensor4D;
    if (win > 0) {
      const { windows, Hp, Wp } = windowPartition(h, win);
      h = windowUnpartition(visionAttention(weights, `${prefix}.attn`, windows, v.num_attention_heads, v.use_rel_pos), win, Hp, Wp, H, W);
    } else {
      h = visionAttention(weights, `${prefix}.attn`, h, v.num_attention_heads, v.use_rel_pos);
    }
    const x1 = tf.add(x, h);
    const n2 = layerNormP(weights, `${prefix}.layer_norm2`, x1, v.layer_norm_eps);
    const mlp = linearP(weights, `${prefix}.mlp.lin2`, activation(v.hidden_act, linearP(weights, `${prefix}.mlp.lin1`, tf.reshape(n2, [B * H * W, C]))));
    return tf.add(x1, tf.reshape(mlp, [B, H, W, C])) as tf.Tensor4D;
  });
}

/**
 * Vision encoder: pixel_values [B, 3, S, S] (NCHW, as HF) -> image embeddings NHWC [B, h, w, C_out].
 * Layers run one at a time so only one layer's activations are alive.
 */
export function visionEncoderNHWC(weights: Weights, config: SamConfig, pixelValues: tf.Tensor4D): tf.Tensor4D {
  const v = config.vision;
  const [, ch, H, W] = pixelValues.shape;
  if (ch !== v.num_channels || H !== v.image_size || W !== v.image_size) {
    throw new Error(`pixel_values must be [B, ${v.num_channels}, ${v.image_size}, ${v.image_size}], got [${pixelValues.shape}]`);
  }
  let x = tf.tidy(() => {
    const nhwc = tf.transpose(pixelValues, [0, 2, 3, 1]) as tf.Tensor4D;
    let e = convPatchify(nhwc, param(weights, 'vision_encoder.patch_embed.projection.weight'),
      param(weights, 'vision_encoder.patch_embed.projection.bias'), v.patch_size);
    if (v.use_abs_pos) e = tf.add(e, param(weights, 'vision_encoder.pos_embed')) as tf.Tensor4D;
    return e;
  });
  for (let i = 0; i < v.num_hidden_layers; i++) {
    const next = visionLayer(weights, config, i, x);
    x.dispose();
    x = next;
  }
  const out = tf.tidy(() => {
    const [B, h, w, C] = x.shape;
    const oc = v.output_channels;
    const w1 = param(weights, 'vision_encoder.neck.conv1.weight'); // [oc, C, 1, 1]
    let y = tf.reshape(linear(tf.reshape(x, [B * h * w, C]), tf.reshape(w1, [oc, C])), [B, h, w, oc]);
    y = layerNormP(weights, 'vision_encoder.neck.layer_norm1', y, v.layer_norm_eps);
    const w2 = tf.transpose(param(weights, 'vision_encoder.neck.conv2.weight'), [2, 3, 1, 0]) as tf.Tensor4D; // [3,3,in,out]
    y = tf.conv2d(y as tf.Tensor4D, w2, 1, 'same');
    return layerNormP(weights, 'vision_encoder.neck.layer_norm2', y, v.layer_norm_eps) as tf.Tensor4D;
  });
  x.dispose();
  return out;
}
