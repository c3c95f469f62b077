// SAM's ViT image encoder (HF SamVisionEncoder) as an ONNX graph for ONNX Runtime's CPU kernels, built from the HF
// weights of any config (vit-b/l/h, MedSAM, the built-in model). One image per run (pixel_values [1, 3, S, S]).
//   - Tokens are 2-D rows [tokens, C] between blocks: every linear layer is one Gemm on the HF [out, in] weight
//     (transB; MLAS pre-packs constant weights once per session), LayerNormalization (opset 17) normalises rows.
//   - The residual add and the second LayerNorm are one SkipLayerNormalization; GELU is one Gelu kernel.
//   - q, k, v come from three Gemms on row blocks of the HF qkv weight (no split or head transposes); attention is
//     com.microsoft MultiHeadAttention over [windows, tokens, C] (head split, QKᵀ, softmax, PV in one kernel) with
//     HF add_decomposed_rel_pos as its attention bias: q·R_h per query row and q·R_w per query column (the gathered
//     tables precomputed at build time), broadcast over key columns / rows.
//   - Global attention runs in blocks of query rows, so its score matrix never exceeds ~64 MB (a ViT-B global
//     layer's full [12, 4096, 4096] scores would be 805 MB), which keeps the embedding run's memory low.
//   - Neck: 1×1 conv as a Gemm, LayerNorm2d on rows, 3×3 conv (NCHW Conv), LayerNorm2d; output NHWC [1, h, w, C]
//     (what the embedding cache stores) or NCHW (HF's image_embeddings).
import type { SamConfig } from '../config.ts';
import type { HostTensor } from '../safetensors.ts';
import { SHARED_POS_EMBED_KEY, VISION_KEYS, biasOf, weightOf, type visionLayerKeys } from '../checkpoint/keys.ts';
import { float } from './graph.ts';
import { SamGraph, type HostWeights, imageWidePositionalEmbeddingsHost } from './layers.ts';

/** Largest attention score block of a global layer, in bytes. */
const MAX_SCORE_BYTES = 64 * 2 ** 20;

export interface VisionGraphOptions {
  /** 'nhwc' (default): image_embeddings_nhwc [1, h, w, C]; 'nchw': image_embeddings [1, C, h, w] (HF / transformers.js). */
  layout?: 'nhwc' | 'nchw';
  /** Also output image_positional_embeddings [1, C, h, w] (transformers.js's vision_encoder.onnx does). */
  positionalOutput?: boolean;
}

export const VISION_INPUT = 'pixel_values';
export const VISION_OUTPUT_NHWC = 'image_embeddings_nhwc';
export const VISION_OUTPUT_NCHW = 'image_embeddings';

/** HF get_rel_pos on the host: table [q, k, C] for query/key lengths, linearly interpolating the table if needed. */
export function getRelPosHost(qSize: number, kSize: number, rel: HostTensor): Float32Array {
  const maxRel = 2 * Math.max(qSize, kSize) - 1;
  const [L, C] = rel.shape;
  const src = rel.data as Float32Array;
  let table = src;
  if (L !== maxRel) {
    // F.interpolate(mode='linear', align_corners=False) along the length axis
    table = new Float32Array(maxRel * C);
    const scale = L / maxRel;
    for (let i = 0; i < maxRel; i++) {
      const s = Math.max(0, (i + 0.5) * scale - 0.5);
      const i0 = Math.min(Math.floor(s), L - 1);
      const i1 = Math.min(i0 + 1, L - 1);
      const t = s - i0;
      for (let c = 0; c < C; c++) table[i * C + c] = (1 - t) * src[i0 * C + c] + t * src[i1 * C + c];
    }
  }
  const qScale = Math.max(kSize / qSize, 1);
  const kScale = Math.max(qSize / kSize, 1);
  const out = new Float32Array(qSize * kSize * C);
  for (let i = 0; i < qSize; i++) {
    for (let j = 0; j < kSize; j++) {
      const idx = Math.trunc(i * qScale - j * kScale + (kSize - 1) * kScale);
      out.set(table.subarray(idx * C, (idx + 1) * C), (i * kSize + j) * C);
    }
  }
  return out;
}

/** [q, k, C] -> [q, C, k] (the right-hand operand of the per-row products). */
function transposeLast2(a: Float32Array, q: number, k: number, C: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < q; i++) for (let j = 0; j < k; j++) for (let c = 0; c < C; c++) out[(i * C + c) * k + j] = a[(i * k + j) * C + c];
  return out;
}

type VisionAttentionKeys = ReturnType<typeof visionLayerKeys>['attn'];

/** Rows of the HF qkv weight [3C, C] / bias [3C] as an initializer named after it (q: 0, k: 1, v: 2). */
function qkvPart(g: SamGraph, keys: VisionAttentionKeys, part: number, C: number, what: 'weight' | 'bias'): string {
  const name = what === 'weight' ? weightOf(keys.qkv) : biasOf(keys.qkv);
  const t = g.weights.get(name);
  if (!t) throw new Error(`missing model parameter ${name}`);
  const n = what === 'weight' ? C * C : C;
  const data = (t.data as Float32Array).subarray(part * n, (part + 1) * n);
  return g.initializer(`${name}[${'qkv'[part]}]`, 'FLOAT', what === 'weight' ? [C, C] : [C], data);
}

/**
 * Multi-head attention with decomposed relative positions over `groups` windows of qh × qw tokens.
 * rows: [groups·L, C] (window-major, layer_norm1 output). Returns [groups·L, C] rows before the output projection.
 * com.microsoft MultiHeadAttention does the head split, QKᵀ + bias, softmax and PV per (window, head) on
 * [groups, L, C] inputs; the bias is HF's rel_h[..., None] + rel_w[..., None, :] built from q.
 */
function windowAttention(g: SamGraph, config: SamConfig, keys: VisionAttentionKeys, rows: string, groups: number, qh: number, qw: number): string {
  const v = config.vision;
  const C = v.hidden_size;
  const heads = v.num_attention_heads;
  const d = C / heads;
  const L = qh * qw;
  const proj = (part: number) => {
    const inputs = [rows, qkvPart(g, keys, part, C, 'weight')];
    if (g.has(biasOf(keys.qkv))) inputs.push(qkvPart(g, keys, part, C, 'bias'));
    return g.reshape(g.op('Gemm', inputs, { transB: 1 }), [groups, L, C]);
  };
  const q = proj(0), k = proj(1), vv = proj(2);
  let q5: string | undefined, relW: string | undefined, relHT: Float32Array | undefined;
  if (v.use_rel_pos) {
    for (const n of [keys.relPosH, keys.relPosW]) if (!g.has(n)) throw new Error(`missing model parameter ${n}`);
    relHT = transposeLast2(getRelPosHost(qh, qh, g.weights.get(keys.relPosH)!), qh, qh, d); // [qh, d, kh]
    relW = g.constF(transposeLast2(getRelPosHost(qw, qw, g.weights.get(keys.relPosW)!), qw, qw, d), [qw, d, qw], `${keys.relPosW}.gathered`);
    q5 = g.transpose(g.reshape(q, [groups, qh, qw, heads, d]), [0, 3, 1, 2, 4]); // [groups, heads, qh, qw, d]
  }
  // Blocks of query rows: the whole window for windowed layers, ~MAX_SCORE_BYTES of scores for global ones.
  const rowsPerBlock = Math.max(1, Math.min(qh, Math.floor(MAX_SCORE_BYTES / (4 * groups * heads * qw * L))));
  const outs: string[] = [];
  for (let r0 = 0; r0 < qh; r0 += rowsPerBlock) {
    const rc = Math.min(rowsPerBlock, qh - r0);
    const whole = rc === qh;
    const qb = whole ? q : g.slice(q, [r0 * qw], [(r0 + rc) * qw], [1]); // [groups, rc·qw, C]
    const inputs = [qb, k, vv];
    if (q5 && relW && relHT) {
      const q5b = whole ? q5 : g.slice(q5, [r0], [r0 + rc], [2]); // [groups, heads, rc, qw, d]
      const relH = g.matmul(q5b, g.constF(relHT.subarray(r0 * d * qh, (r0 + rc) * d * qh), [rc, d, qh], `${keys.relPosH}.gathered`)); // [.., rc, qw, kh]
      const relWq = g.transpose(g.matmul(g.transpose(q5b, [0, 1, 3, 2, 4]), relW), [0, 1, 3, 2, 4]); // [.., rc, qw, kw]
      const bias = g.add(g.op('Unsqueeze', [relH, g.constI64([5])]), g.op('Unsqueeze', [relWq, g.constI64([4])])); // [.., rc, qw, kh, kw]
      inputs.push('', '', g.reshape(bias, [groups, heads, rc * qw, L]));
    }
    outs.push(g.op('MultiHeadAttention', inputs, { num_heads: heads, scale: float(1 / Math.sqrt(d)) }, { domain: 'com.microsoft' })); // [groups, rc·qw, C]
  }
  const o = outs.length === 1 ? outs[0] : g.op('Concat', outs, { axis: 1 });
  return g.reshape(o, [groups * L, C]);
}

/** One ViT block on rows x [H·W, C]; returns the new rows. */
function visionLayer(g: SamGraph, config: SamConfig, i: number, x: string, H: number, W: number): string {
  const v = config.vision;
  const C = v.hidden_size;
  const k = VISION_KEYS.layer(i);
  const ws = v.global_attn_indexes.includes(i) ? 0 : v.window_size;
  const n1 = g.layerNorm(x, k.layerNorm1, v.layer_norm_eps);
  let attnOut: string;
  if (ws > 0) {
    const Hp = Math.ceil(H / ws) * ws, Wp = Math.ceil(W / ws) * ws;
    let img = g.reshape(n1, [H, W, C]);
    // HF pads the normalised tokens with zeros (their q/k/v are then the qkv bias), after layer_norm1
    if (Hp > H || Wp > W) img = g.op('Pad', [img, g.constI64([0, 0, 0, Hp - H, Wp - W, 0])]);
    const nW = (Hp / ws) * (Wp / ws);
    const rows = g.reshape(g.transpose(g.reshape(img, [Hp / ws, ws, Wp / ws, ws, C]), [0, 2, 1, 3, 4]), [nW * ws * ws, C]);
    const o = windowAttention(g, config, k.attn, rows, nW, ws, ws);
    let merged = g.reshape(g.transpose(g.reshape(o, [Hp / ws, Wp / ws, ws, ws, C]), [0, 2, 1, 3, 4]), [Hp, Wp, C]);
    if (Hp > H || Wp > W) merged = g.slice(merged, [0, 0], [H, W], [0, 1]);
    attnOut = g.reshape(merged, [H * W, C]);
  } else {
    attnOut = windowAttention(g, config, k.attn, n1, 1, H, W);
  }
  const proj = g.linear(attnOut, k.attn.proj);
  // x1 = x + attn; n2 = LayerNorm(x1): one SkipLayerNormalization (output 0 = n2, output 3 = x1)
  const [n2, , , x1] = g.opN('SkipLayerNormalization', [x, proj, g.w(weightOf(k.layerNorm2)), g.w(biasOf(k.layerNorm2))], 4,
    { epsilon: float(v.layer_norm_eps) }, { domain: 'com.microsoft' });
  const h = g.activation(v.hidden_act, g.linear(n2, k.mlp.lin1));
  return g.add(x1, g.linear(h, k.mlp.lin2));
}

/** Build the vision encoder graph for `config` from host weights (vision_encoder.* and, for positionalOutput, the shared PE). */
export function buildVisionGraph(config: SamConfig, weights: HostWeights, o: VisionGraphOptions = {}): SamGraph {
  const v = config.vision;
  const g = new SamGraph('sam_vision_encoder', weights);
  const S = v.image_size, k = v.patch_size, C = v.hidden_size;
  const H = Math.floor(S / k), W = H;
  const px = g.input(VISION_INPUT, 'FLOAT', [1, v.num_channels, S, S]);
  const conv = g.op('Conv', [px, g.w(weightOf(VISION_KEYS.patchEmbed)), g.w(biasOf(VISION_KEYS.patchEmbed))],
    { kernel_shape: [k, k], strides: [k, k] }); // [1, C, H, W]
  let x = g.reshape(g.transpose(conv, [0, 2, 3, 1]), [H * W, C]);
  if (v.use_abs_pos) x = g.add(x, g.w(VISION_KEYS.posEmbed, [H * W, C]));
  for (let i = 0; i < v.num_hidden_layers; i++) x = visionLayer(g, config, i, x, H, W);
  const oc = v.output_channels;
  const neck = VISION_KEYS.neck;
  let y = g.op('Gemm', [x, g.w(weightOf(neck.conv1), [oc, C])], { transB: 1 });
  y = g.layerNorm(y, neck.layerNorm1, v.layer_norm_eps);
  y = g.transpose(g.reshape(y, [1, H, W, oc]), [0, 3, 1, 2]);
  y = g.op('Conv', [y, g.w(weightOf(neck.conv2))], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] });
  y = g.layerNorm(g.transpose(y, [0, 2, 3, 1]), neck.layerNorm2, v.layer_norm_eps); // [1, H, W, oc]
  if ((o.layout ?? 'nhwc') === 'nhwc') g.output(VISION_OUTPUT_NHWC, y, 'FLOAT', [1, H, W, oc]);
  else g.output(VISION_OUTPUT_NCHW, g.transpose(y, [0, 3, 1, 2]), 'FLOAT', [1, oc, H, W]);
  if (o.positionalOutput) {
    const pos = weights.get(SHARED_POS_EMBED_KEY);
    if (!pos) throw new Error(`missing model parameter ${SHARED_POS_EMBED_KEY}`);
    const s = config.prompt.imageEmbeddingSize;
    const pe = g.constF(imageWidePositionalEmbeddingsHost(pos, s), [1, s, s, config.prompt.hidden_size], 'image_positional_embeddings_nhwc');
    g.output('image_positional_embeddings', g.transpose(pe, [0, 3, 1, 2]), 'FLOAT', [1, config.prompt.hidden_size, s, s]);
  }
  return g;
}
