// SAM's ViT image encoder (HF SamVisionEncoder): patch embedding (SamPatchEmbeddings), absolute position embedding,
// windowed and global attention blocks (SamVisionLayer: SamVisionAttention with decomposed relative positions +
// SamMLPBlock), and the convolutional neck (SamVisionNeck). Frozen when FedSAM fine-tunes, so by default forward
// only (plain tf ops); with `trainable` (pretraining) every op has a gradient that runs on wasm and cpu: products
// through ops.matMul2d / ops.linear, the relative-position lookup as a one-hot product (tfjs-wasm has no
// UnsortedSegmentSum for a gather's gradient) and the neck's 3x3 convolution as a product over 3x3 patches
// (tfjs-wasm has no Conv2DBackpropFilter). The parts are functions over the weights map, in NHWC (HF: NCHW);
// names: checkpoint/keys.ts.
// Shaped for tfjs-wasm (see ops.ts): every product is 2-D (one per window and head; tfjs-wasm's batched product is a
// naive loop), the q/k/v of a window/head are sliced out of one qkv product, the relative-position terms of all
// windows and heads come from one small product per query row (or column), and only copies with long contiguous
// runs are used to (un)partition windows. Optionally a FrozenWeightCache keeps the transposed (and XNNPACK-packed)
// weights across images.
import * as tf from '@tensorflow/tfjs';
import type { SamConfig } from '../config.ts';
import { biasOf, VISION_KEYS, visionLayerKeys, weightOf } from '../checkpoint/keys.ts';
import { ensureFastKernels } from './kernels.ts';
import { type Weights, type FrozenWeightCache, param, layerNormP, activation, linearFrozen, product, linear, matMul2d } from './ops.ts';

/** Products of the encoder: frozen (fast, no gradient) or trainable (custom gradients, see ops.ts). */
interface Mode { trainable: boolean; cache?: FrozenWeightCache }
const mm = (m: Mode, a: tf.Tensor, b: tf.Tensor, ta = false, tb = false): tf.Tensor2D => (m.trainable ? matMul2d(a, b, ta, tb) : product(a, b, ta, tb));
const lin = (m: Mode, x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor): tf.Tensor2D => (m.trainable ? linear(x, w, b) as tf.Tensor2D : linearFrozen(x, w, b, m.cache));

type VisionAttentionKeys = ReturnType<typeof visionLayerKeys>['attn'];

/** HF SamVisionAttention.get_rel_pos: relative position table [q, k, C] for query/key lengths, interpolating the table if needed. */
export function getRelPos(qSize: number, kSize: number, relPos: tf.Tensor2D, trainable = false): tf.Tensor3D {
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
    if (trainable) {
      if (table !== relPos) throw new Error(`relative position table has ${relPos.shape[0]} rows, expected ${maxRelDist}: a trainable encoder needs rel_pos tables sized for its input (fix the config)`);
      const oneHot = new Float32Array(qSize * kSize * maxRelDist);
      idx.forEach((j, r) => (oneHot[r * maxRelDist + j] = 1));
      return tf.reshape(matMul2d(tf.tensor2d(oneHot, [qSize * kSize, maxRelDist]), table), [qSize, kSize, table.shape[1]]) as tf.Tensor3D;
    }
    return tf.reshape(tf.gather(table, tf.tensor1d(idx, 'int32')), [qSize, kSize, table.shape[1]]) as tf.Tensor3D;
  });
}

/**
 * Multi-head self-attention with decomposed relative positions inside windows of one image.
 * qkv: [nW, wh, ww, 3C] (q | k | v, each heads × d; qkv bias included). Returns [nW, wh, ww, C] before out-projection.
 */
function windowAttention(weights: Weights, keys: VisionAttentionKeys, qkv: tf.Tensor4D, heads: number, useRelPos: boolean, m: Mode): tf.Tensor4D {
  return tf.tidy(() => {
    const [nW, wh, ww, C3] = qkv.shape;
    const C = C3 / 3;
    const d = C / heads;
    const n = wh * ww;
    const scale = 1 / Math.sqrt(d);
    // Relative positions for all windows and heads: rel_h[y, (w, x, h), ky] = q[w, y, x, h]·Rh[y, ky], one product per
    // query row y (and per query column x for rel_w).
    let relH: tf.Tensor | undefined;
    let relW: tf.Tensor | undefined;
    if (useRelPos) {
      const RhT = tf.transpose(getRelPos(wh, wh, param(weights, keys.relPosH) as tf.Tensor2D, m.trainable), [0, 2, 1]); // [qy, d, ky]
      const RwT = tf.transpose(getRelPos(ww, ww, param(weights, keys.relPosW) as tf.Tensor2D, m.trainable), [0, 2, 1]); // [qx, d, kx]
      const hs: tf.Tensor[] = [];
      for (let y = 0; y < wh; y++) {
        const qy = tf.reshape(tf.slice(qkv, [0, y, 0, 0], [nW, 1, ww, C]), [nW * ww * heads, d]);
        hs.push(mm(m, qy, tf.reshape(tf.slice(RhT, [y, 0, 0], [1, d, wh]), [d, wh])));
      }
      relH = tf.reshape(tf.stack(hs), [wh, nW, ww, heads, wh]); // (y, w, x, h, ky)
      const ws: tf.Tensor[] = [];
      for (let x = 0; x < ww; x++) {
        const qx = tf.reshape(tf.slice(qkv, [0, 0, x, 0], [nW, wh, 1, C]), [nW * wh * heads, d]);
        ws.push(mm(m, qx, tf.reshape(tf.slice(RwT, [x, 0, 0], [1, d, ww]), [d, ww])));
      }
      relW = tf.reshape(tf.stack(ws), [ww, nW, wh, heads, ww]); // (x, w, y, h, kx)
    }
    const outs: tf.Tensor[] = [];
    for (let w = 0; w < nW; w++) {
      for (let h = 0; h < heads; h++) {
        outs.push(tf.tidy(() => {
          const part = (j: number) => tf.reshape(tf.slice(qkv, [w, 0, 0, j * C + h * d], [1, wh, ww, d]), [n, d]);
          let s: tf.Tensor = mm(m, part(0), tf.mul(part(1), scale), false, true); // [n, n]
          if (relH && relW) {
            const rh = tf.reshape(tf.slice(relH, [0, w, 0, h, 0], [wh, 1, ww, 1, wh]), [n, wh, 1]);
            const rw = tf.reshape(tf.transpose(tf.reshape(tf.slice(relW, [0, w, 0, h, 0], [ww, 1, wh, 1, ww]), [ww, wh, ww]), [1, 0, 2]), [n, 1, ww]);
            s = tf.reshape(tf.add(tf.add(tf.reshape(s, [n, wh, ww]), rh), rw), [n, n]);
          }
          return mm(m, tf.softmax(s), part(2)); // [n, d]
        }));
      }
    }
    // [nW, heads, n, d] -> [nW, n, heads, d]
    return tf.reshape(tf.transpose(tf.reshape(tf.stack(outs), [nW, heads, n, d]), [0, 2, 1, 3]), [nW, wh, ww, C]) as tf.Tensor4D;
  });
}

/**
 * HF SamVisionAttention of one layer on one image x [H, W, C] (layer_norm1 output) -> [H·W, C] after the output
 * projection; windowed (HF's window_partition / window_unpartition of SamVisionLayer) unless `win` is 0 (global).
 */
function visionAttention(weights: Weights, config: SamConfig, keys: VisionAttentionKeys, x: tf.Tensor, win: number, m: Mode): tf.Tensor2D {
  return tf.tidy(() => {
    const v = config.vision;
    const [H, W, C] = x.shape as [number, number, number];
    // q/k/v of the real tokens only; padded tokens (zeros in HF) have q/k/v = the qkv bias.
    const qkv = lin(m, tf.reshape(x, [H * W, C]), param(weights, weightOf(keys.qkv)));
    const qkvBias = weights.get(biasOf(keys.qkv));
    let windows: tf.Tensor4D;
    let Hp = H, Wp = W;
    if (win > 0) {
      const padH = (win - (H % win)) % win;
      const padW = (win - (W % win)) % win;
      Hp = H + padH;
      Wp = W + padW;
      let q3: tf.Tensor = tf.reshape(qkv, [H, W, 3 * C]);
      if (padH || padW) q3 = tf.pad(q3, [[0, padH], [0, padW], [0, 0]]);
      if (qkvBias) q3 = tf.add(q3, qkvBias);
      // (wy, y, wx, x·3C) -> (wy, wx, y, x·3C)
      windows = tf.reshape(tf.transpose(tf.reshape(q3, [Hp / win, win, Wp / win, win * 3 * C]), [0, 2, 1, 3]), [-1, win, win, 3 * C]) as tf.Tensor4D;
    } else {
      windows = tf.reshape(qkvBias ? tf.add(qkv, qkvBias) : qkv, [1, H, W, 3 * C]) as tf.Tensor4D;
    }
    const o = windowAttention(weights, keys, windows, v.num_attention_heads, v.use_rel_pos, m); // [nW, wh, ww, C]
    let merged: tf.Tensor = o;
    if (win > 0) {
      // (wy, wx, y, x·C) -> (wy, y, wx, x·C)
      merged = tf.reshape(tf.transpose(tf.reshape(o, [Hp / win, Wp / win, win, win * C]), [0, 2, 1, 3]), [Hp, Wp, C]);
      if (Hp > H || Wp > W) merged = tf.slice(merged, [0, 0, 0], [H, W, C]);
    }
    return lin(m, tf.reshape(merged, [H * W, C]), param(weights, weightOf(keys.proj)), weights.get(biasOf(keys.proj)));
  });
}

/** HF SamVisionLayer: x + attn(norm1(x)) (windowed unless global), then x + mlp(norm2(x)) (SamMLPBlock). */
export function visionLayer(weights: Weights, config: SamConfig, i: number, x: tf.Tensor4D, cache?: FrozenWeightCache, trainable = false): tf.Tensor4D {
  ensureFastKernels();
  const m: Mode = { trainable, cache };
  return tf.tidy(() => {
    const v = config.vision;
    const K = visionLayerKeys(i);
    const win = v.global_attn_indexes.includes(i) ? 0 : v.window_size;
    const [B, H, W, C] = x.shape;
    const x2 = tf.reshape(x, [B * H * W, C]);
    const n1 = layerNormP(weights, K.layerNorm1, x2, v.layer_norm_eps);
    const attn: tf.Tensor[] = [];
    for (let b = 0; b < B; b++) {
      const img = tf.reshape(B === 1 ? n1 : tf.slice(n1, [b * H * W, 0], [H * W, C]), [H, W, C]);
      attn.push(visionAttention(weights, config, K.attn, img, win, m));
    }
    const x1 = tf.add(x2, attn.length === 1 ? attn[0] : tf.concat(attn, 0));
    const n2 = layerNormP(weights, K.layerNorm2, x1, v.layer_norm_eps);
    const h = activation(v.hidden_act, lin(m, n2, param(weights, weightOf(K.mlp.lin1)), weights.get(biasOf(K.mlp.lin1))));
    const mlp = lin(m, h, param(weights, weightOf(K.mlp.lin2)), weights.get(biasOf(K.mlp.lin2)));
    return tf.reshape(tf.add(x1, mlp), [B, H, W, C]) as tf.Tensor4D;
  });
}

/**
 * HF SamPatchEmbeddings + the absolute position embedding: pixel_values [B, C, S, S] (NCHW) -> [B, h, w, hidden] NHWC.
 * The stride-k convolution runs as one product straight from NCHW: rows (b, y, x), columns (c, ky, kx), the HF
 * weight's [out, in, ky, kx] order.
 */
export function patchEmbeddings(weights: Weights, config: SamConfig, pixelValues: tf.Tensor4D, trainable = false): tf.Tensor4D {
  const v = config.vision;
  const [B, ch, H, W] = pixelValues.shape;
  const k = v.patch_size;
  const h = Math.floor(H / k);
  const w = Math.floor(W / k);
  return tf.tidy(() => {
    const pv = H === h * k && W === w * k ? pixelValues : tf.slice(pixelValues, [0, 0, 0, 0], [B, ch, h * k, w * k]);
    const a = tf.transpose(tf.reshape(pv, [B * ch * h, k, w, k]), [0, 2, 1, 3]); // (b, c, y, x, ky, kx)
    const rows = tf.reshape(tf.transpose(tf.reshape(a, [B, ch, h * w, k * k]), [0, 2, 1, 3]), [B * h * w, ch * k * k]);
    const wm = tf.reshape(param(weights, weightOf(VISION_KEYS.patchEmbed)), [v.hidden_size, ch * k * k]);
    let e: tf.Tensor = lin({ trainable }, rows, wm, param(weights, biasOf(VISION_KEYS.patchEmbed)));
    e = tf.reshape(e, [B, h, w, v.hidden_size]);
    if (v.use_abs_pos) e = tf.add(e, param(weights, VISION_KEYS.posEmbed));
    return e as tf.Tensor4D;
  });
}

/** A 3x3 'same' convolution without bias as one product over 3x3 patches (differentiable on wasm): x [B, h, w, C], HF weight [out, C, 3, 3]. */
function conv3x3Patches(x: tf.Tensor4D, w: tf.Tensor): tf.Tensor4D {
  return tf.tidy(() => {
    const [B, h, ww, C] = x.shape;
    const out = w.shape[0]!;
    const p = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]);
    const taps: tf.Tensor[] = [];
    for (let ky = 0; ky < 3; ky++) for (let kx = 0; kx < 3; kx++) taps.push(tf.slice(p, [0, ky, kx, 0], [B, h, ww, C]));
    const rows = tf.reshape(tf.concat(taps, 3), [B * h * ww, 9 * C]); // columns (ky, kx, c)
    const wm = tf.reshape(tf.transpose(w, [0, 2, 3, 1]), [out, 9 * C]);
    return tf.reshape(linear(rows, wm), [B, h, ww, out]) as tf.Tensor4D;
  });
}

/** HF SamVisionNeck: 1x1 conv (a product), LayerNorm, 3x3 conv, LayerNorm; NHWC [B, h, w, hidden] -> [B, h, w, out]. */
export function visionNeck(weights: Weights, config: SamConfig, x: tf.Tensor4D, trainable = false): tf.Tensor4D {
  const v = config.vision;
  const N = VISION_KEYS.neck;
  return tf.tidy(() => {
    const [B, hh, ww, C] = x.shape;
    const oc = v.output_channels;
    const w1 = tf.reshape(param(weights, weightOf(N.conv1)), [oc, C]); // [oc, C, 1, 1]
    let y: tf.Tensor = lin({ trainable }, tf.reshape(x, [B * hh * ww, C]), w1);
    y = layerNormP(weights, N.layerNorm1, y, v.layer_norm_eps);
    const y4 = tf.reshape(y, [B, hh, ww, oc]) as tf.Tensor4D;
    if (trainable) y = conv3x3Patches(y4, param(weights, weightOf(N.conv2)));
    else y = tf.conv2d(y4, tf.transpose(param(weights, weightOf(N.conv2)), [2, 3, 1, 0]) as tf.Tensor4D, 1, 'same'); // [3,3,in,out]
    return tf.reshape(layerNormP(weights, N.layerNorm2, y, v.layer_norm_eps), [B, hh, ww, oc]) as tf.Tensor4D;
  });
}

/**
 * HF SamVisionEncoder: pixel_values [B, 3, S, S] (NCHW, as HF) -> image embeddings NHWC [B, h, w, C_out].
 * Layers run one at a time so only one layer's activations are alive. With a FrozenWeightCache (owned and disposed
 * by the caller), transposed/packed weights are reused across calls.
 */
export function visionEncoderNHWC(weights: Weights, config: SamConfig, pixelValues: tf.Tensor4D, cache?: FrozenWeightCache, trainable = false): tf.Tensor4D {
  ensureFastKernels();
  const v = config.vision;
  const [, ch, H, W] = pixelValues.shape;
  if (ch !== v.num_channels || H !== v.image_size || W !== v.image_size) {
    throw new Error(`pixel_values must be [B, ${v.num_channels}, ${v.image_size}, ${v.image_size}], got [${pixelValues.shape}]`);
  }
  let x = patchEmbeddings(weights, config, pixelValues, trainable);
  for (let i = 0; i < v.num_hidden_layers; i++) {
    const next = visionLayer(weights, config, i, x, cache, trainable);
    x.dispose();
    x = next;
  }
  const out = visionNeck(weights, config, x, trainable);
  x.dispose();
  return out;
}
