// SAM's prompt encoder + mask decoder forward (HF SamPromptEncoder + SamMaskDecoder) as an ONNX graph, with HF
// semantics: points (labels 1 / 0 / -1 / -10, the -1 padding point when there is no box), boxes, mask prompts,
// multimask on/off, [B, point_batch, ...] shapes; every size from config.json.
// Built from plain ONNX ops (Gemm / MatMul / Softmax / LayerNormalization / Where ...) with the weights as
// initializers under their HF names and in HF layout; derived layouts (ConvTranspose weights as products, the
// concatenated output tokens) are ops on those initializers that ORT folds at load time. So a backward pass can be
// added to this graph later with the trainable tensors addressed by their HF names.
// One graph per prompt signature (which prompts, how many points, multimask): the engine builds them on demand.
import type { SamConfig } from '../config.ts';
import {
  DECODER_KEYS, PROMPT_KEYS, SHARED_POS_EMBED_KEY, biasOf, weightOf, type attentionKeys, type feedForwardKeys,
} from '../checkpoint/keys.ts';
import { float } from './graph.ts';
import { SamGraph, type HostWeights, imageWidePositionalEmbeddingsHost } from './layers.ts';

/** torch.nn.LayerNorm's default eps, used by HF for transformer.layer_norm_final_attn. */
const TORCH_LN_EPS = 1e-5;

export interface DecoderSignature {
  /** Number of points per prompt (0 = no point prompt). */
  points: number;
  boxes: boolean;
  masks: boolean;
  multimask: boolean;
  /** Also output the prompt encoder's sparse_embeddings [B, pb, n, C] and dense_embeddings [B, C, h, w] (parity checks). */
  debug?: boolean;
}

export interface DecoderGraphOptions {
  /** 'nhwc' (default): image_embeddings_nhwc [B, h, w, C]; 'nchw': image_embeddings [B, C, h, w] + image_positional_embeddings input (transformers.js). */
  layout?: 'nhwc' | 'nchw';
}

export const signatureKey = (s: DecoderSignature) => `p${s.points}${s.boxes ? 'b' : ''}${s.masks ? 'm' : ''}${s.multimask ? 'k' : ''}${s.debug ? 'd' : ''}`;

/** SamAttention: q [BP, Tq, C], k/v [BP, Tk, C] -> [BP, Tq, C] (heads split, scaled dot product, out_proj). */
function attention(g: SamGraph, keys: ReturnType<typeof attentionKeys>, heads: number, q: string, k: string, v: string, Tq: number, Tk: number, C: number): string {
  const inner = g.weights.get(weightOf(keys.q))!.shape[0];
  const d = inner / heads;
  const proj = (x: string, module: string, T: number) =>
    g.transpose(g.reshape(g.linear(g.reshape(x, [-1, C]), module), [-1, T, heads, d]), [0, 2, 1, 3]); // [BP, heads, T, d]
  const qh = proj(q, keys.q, Tq), kh = proj(k, keys.k, Tk), vh = proj(v, keys.v, Tk);
  const s = g.mul(g.matmul(qh, g.transpose(kh, [0, 1, 3, 2])), g.constF([1 / Math.sqrt(d)], []));
  const o = g.matmul(g.op('Softmax', [s], { axis: -1 }), vh); // [BP, heads, Tq, d]
  const rows = g.reshape(g.transpose(o, [0, 2, 1, 3]), [-1, inner]);
  return g.reshape(g.linear(rows, keys.out), [-1, Tq, C]);
}

/** SamFeedForward: proj_in, ReLU, (layers, ReLU)*, proj_out on rows [N, C]. */
function feedForward(g: SamGraph, keys: ReturnType<typeof feedForwardKeys>, x: string): string {
  let h = g.op('Relu', [g.linear(x, keys.projIn)]);
  for (const layer of keys.layers) h = g.op('Relu', [g.linear(h, layer)]);
  return g.linear(h, keys.projOut);
}

/** Random-Fourier positional encoding in the graph: coords in [0,1] [..., 2] -> [..., C]. */
function positionalEncoding(g: SamGraph, coords01: string): string {
  const c = g.op('Sub', [g.mul(coords01, g.constF([2], [])), g.constF([1], [])]);
  const proj = g.mul(g.matmul(c, g.w(SHARED_POS_EMBED_KEY)), g.constF([2 * Math.PI], []));
  return g.op('Concat', [g.op('Sin', [proj]), g.op('Cos', [proj])], { axis: -1 });
}

/** A 2×2 stride-2 ConvTranspose2d on rows x [BP, N, in] in blocked order: [BP, 4N, out], rows (pixel, kh, kw). */
function convTranspose2x2Blocked(g: SamGraph, x: string, module: string, cin: number, cout: number): string {
  const wm = g.reshape(g.transpose(g.w(weightOf(module)), [0, 2, 3, 1]), [cin, 4 * cout]); // [in, (kh, kw, out)]
  return g.add(g.reshape(g.matmul(x, wm), [0, -1, cout]), g.w(biasOf(module)));
}

/** A k×k stride-k Conv2d + LayerNorm2d + activation step of SamMaskEmbedding, NCHW in and out. */
function maskEmbedStep(g: SamGraph, config: SamConfig, x: string, i: 1 | 2): string {
  const m = PROMPT_KEYS.maskEmbed;
  const [conv, norm] = i === 1 ? [m.conv1, m.layerNorm1] : [m.conv2, m.layerNorm2];
  let y = g.op('Conv', [x, g.w(weightOf(conv)), g.w(biasOf(conv))], { kernel_shape: [2, 2], strides: [2, 2] });
  y = g.activation(config.prompt.hidden_act, g.layerNorm(g.transpose(y, [0, 2, 3, 1]), norm, config.prompt.layer_norm_eps));
  return g.transpose(y, [0, 3, 1, 2]);
}

/** Build the prompt encoder + mask decoder graph for one prompt signature. */
export function buildDecoderGraph(config: SamConfig, weights: HostWeights, sig: DecoderSignature, o: DecoderGraphOptions = {}): SamGraph {
  const layout = o.layout ?? 'nhwc';
  const g = new SamGraph(`sam_decoder_${signatureKey(sig)}`, weights);
  const C = config.decoder.hidden_size;
  const s = config.prompt.imageEmbeddingSize;
  const N = s * s;
  const heads = config.decoder.num_attention_heads;
  const eps = config.decoder.layer_norm_eps;
  const size = config.prompt.image_size;
  const M = config.decoder.num_multimask_outputs + 1; // mask tokens (the output tokens are the IoU token + these)
  if (config.prompt.hidden_size !== C) throw new Error('prompt encoder and mask decoder widths differ');

  // --- inputs ----------------------------------------------------------------------------------------------------
  const emb = layout === 'nhwc'
    ? g.input('image_embeddings_nhwc', 'FLOAT', ['batch', s, s, C])
    : g.input('image_embeddings', 'FLOAT', ['batch', C, s, s]);
  const pos = layout === 'nchw' ? g.input('image_positional_embeddings', 'FLOAT', ['batch', C, s, s]) : undefined;
  const points = sig.points ? g.input('input_points', 'FLOAT', ['batch', 'point_batch', sig.points, 2]) : undefined;
  const labels = sig.points ? g.input('input_labels', 'INT64', ['batch', 'point_batch', sig.points]) : undefined;
  const boxes = sig.boxes ? g.input('input_boxes', 'FLOAT', ['batch', 'point_batch', 4]) : undefined;
  const masks = sig.masks ? g.input('input_masks', 'FLOAT', ['batch', 1, 4 * s, 4 * s]) : undefined;

  // [B, pb] as a 1-D int64 tensor (for the final reshape and for expanding per-image tensors over pb)
  const prompt = points ?? boxes;
  const bpb = prompt ? g.slice(g.op('Shape', [prompt]), [0], [2], [0])
    : g.op('Concat', [g.slice(g.op('Shape', [emb]), [0], [1], [0]), g.constI64([1])], { axis: 0 });

  // --- prompt encoder ---------------------------------------------------------------------------------------------
  const sparseParts: string[] = [];
  let nSparse = 0;
  if (points && labels) {
    const pad = !boxes;
    let pts = g.add(points, g.constF([0.5], []));
    let lab = labels;
    if (pad) {
      pts = g.op('Pad', [pts, g.constI64([0, 0, 0, 0, 0, 0, 1, 0])]); // a (0, 0) point ...
      lab = g.op('Pad', [lab, g.constI64([0, 0, 0, 0, 0, 1]), g.constI64([-1], [])]); // ... labelled -1
    }
    let pe = positionalEncoding(g, g.op('Div', [pts, g.constF([size], [])])); // [B, pb, n, C]
    const is = (v: number) => g.op('Unsqueeze', [g.op('Equal', [lab, g.constI64([v], [])]), g.constI64([-1])]);
    pe = g.op('Where', [is(-1), g.w(weightOf(PROMPT_KEYS.notAPointEmbed), [C]), pe]);
    pe = g.op('Where', [is(-10), g.constF([0], []), pe]);
    pe = g.op('Where', [is(0), g.add(pe, g.w(weightOf(PROMPT_KEYS.pointEmbed(0)), [C])), pe]);
    pe = g.op('Where', [is(1), g.add(pe, g.w(weightOf(PROMPT_KEYS.pointEmbed(1)), [C])), pe]);
    sparseParts.push(pe);
    nSparse += sig.points + (pad ? 1 : 0);
  }
  if (boxes) {
    const coords = g.reshape(g.op('Div', [g.add(boxes, g.constF([0.5], [])), g.constF([size], [])]), [0, 0, 2, 2]);
    const corners = g.op('Concat', [g.w(weightOf(PROMPT_KEYS.pointEmbed(2))), g.w(weightOf(PROMPT_KEYS.pointEmbed(3)))], { axis: 0 }); // [2, C]
    sparseParts.push(g.add(positionalEncoding(g, coords), corners));
    nSparse += 2;
  }
  // image tokens [B, N, C] + dense prompt embedding
  let image = layout === 'nhwc' ? g.reshape(emb, [0, N, C]) : g.reshape(g.transpose(emb, [0, 2, 3, 1]), [0, N, C]);
  if (masks) {
    let m = maskEmbedStep(g, config, masks, 1);
    m = maskEmbedStep(g, config, m, 2);
    const mic = config.prompt.mask_input_channels;
    const rows = g.reshape(g.transpose(m, [0, 2, 3, 1]), [-1, mic]);
    const dense = g.op('Gemm', [rows, g.w(weightOf(PROMPT_KEYS.maskEmbed.conv3), [C, mic]), g.w(biasOf(PROMPT_KEYS.maskEmbed.conv3))], { transB: 1 });
    image = g.add(image, g.reshape(dense, [-1, N, C]));
    if (sig.debug) g.output('dense_embeddings', g.transpose(g.reshape(dense, [-1, s, s, C]), [0, 3, 1, 2]), 'FLOAT', ['batch', C, s, s]);
  } else {
    image = g.add(image, g.w(weightOf(PROMPT_KEYS.noMaskEmbed)));
    if (sig.debug) {
      const shape = g.op('Concat', [g.slice(g.op('Shape', [emb]), [0], [1], [0]), g.constI64([C, s, s])], { axis: 0 });
      g.output('dense_embeddings', g.op('Expand', [g.w(weightOf(PROMPT_KEYS.noMaskEmbed), [1, C, 1, 1]), shape]), 'FLOAT', ['batch', C, s, s]);
    }
  }
  if (sig.debug && sparseParts.length) {
    g.output('sparse_embeddings', sparseParts.length === 1 ? sparseParts[0] : g.op('Concat', sparseParts, { axis: 2 }), 'FLOAT', ['batch', 'point_batch', nSparse, C]);
  }

  // --- mask decoder ------------------------------------------------------------------------------------------------
  // tokens [B, pb, T, C] = iou token, mask tokens, sparse prompt tokens
  const T = 1 + M + nSparse;
  const outTokens = g.op('Concat', [g.w(weightOf(DECODER_KEYS.iouToken)), g.w(weightOf(DECODER_KEYS.maskTokens))], { axis: 0 }); // [1 + M, C]
  const bpbMC = g.op('Concat', [bpb, g.constI64([1 + M, C])], { axis: 0 });
  let tokens = g.op('Expand', [outTokens, bpbMC]);
  if (sparseParts.length) tokens = g.op('Concat', [tokens, ...sparseParts], { axis: 2 });
  const tok = g.reshape(tokens, [-1, T, C]); // [BP, T, C]
  // image embeddings (+ dense) and positional embeddings repeated over the point batch: [BP, N, C]
  const perPrompt = (x: string) => g.reshape(g.op('Expand', [g.op('Unsqueeze', [x, g.constI64([1])]), g.op('Concat', [bpb, g.constI64([1, 1])], { axis: 0 })]), [-1, N, C]);
  let keys = perPrompt(image);
  const keyPe = pos ? perPrompt(g.reshape(g.transpose(pos, [0, 2, 3, 1]), [0, N, C]))
    : g.constF(imageWidePositionalEmbeddingsHost(g.weights.get(SHARED_POS_EMBED_KEY)!, s), [N, C], 'image_positional_embeddings');

  // TwoWayTransformer
  let queries = tok;
  for (let i = 0; i < config.decoder.num_hidden_layers; i++) {
    const b = DECODER_KEYS.transformer.layer(i);
    if (i === 0) queries = attention(g, b.selfAttn, heads, queries, queries, queries, T, T, C); // skip_first_layer_pe
    else {
      const q = g.add(queries, tok);
      queries = g.add(queries, attention(g, b.selfAttn, heads, q, q, queries, T, T, C));
    }
    queries = g.layerNorm(queries, b.layerNorm1, eps);
    let q = g.add(queries, tok);
    const k = g.add(keys, keyPe);
    queries = g.layerNorm(g.add(queries, attention(g, b.crossAttnTokenToImage, heads, q, k, keys, T, N, C)), b.layerNorm2, eps);
    const mlp = g.linear(g.activation(config.decoder.hidden_act, g.linear(g.reshape(queries, [-1, C]), b.mlp.lin1)), b.mlp.lin2);
    queries = g.layerNorm(g.add(queries, g.reshape(mlp, [-1, T, C])), b.layerNorm3, eps);
    q = g.add(queries, tok);
    keys = g.layerNorm(g.add(keys, attention(g, b.crossAttnImageToToken, heads, k, q, queries, N, T, C)), b.layerNorm4, eps);
  }
  const fq = g.add(queries, tok);
  const fk = g.add(keys, keyPe);
  queries = g.layerNorm(g.add(queries, attention(g, DECODER_KEYS.transformer.finalAttnTokenToImage, heads, fq, fk, keys, T, N, C)),
    DECODER_KEYS.transformer.layerNormFinalAttn, TORCH_LN_EPS);

  // upscaling in blocked pixel order (pixel, kh1, kw1, kh2, kw2): products instead of transposed convolutions
  const C4 = C / 4, C8 = C / 8;
  let up = convTranspose2x2Blocked(g, keys, DECODER_KEYS.upscaleConv1, C, C4); // [BP, 4N, C4]
  up = g.gelu(g.layerNorm(up, DECODER_KEYS.upscaleLayerNorm, eps));
  up = g.gelu(convTranspose2x2Blocked(g, up, DECODER_KEYS.upscaleConv2, C4, C8)); // [BP, 16N, C8]

  const selected = sig.multimask ? Array.from({ length: M - 1 }, (_, i) => i + 1) : [0]; // HF's mask slice
  const kSel = selected.length;
  const tokenRow = (t: number) => g.reshape(g.slice(queries, [t], [t + 1], [1]), [-1, C]); // [BP, C]
  const hyper = selected.map((t) => g.op('Unsqueeze', [feedForward(g, DECODER_KEYS.hypernetworkMlp(t), tokenRow(1 + t)), g.constI64([1])]));
  const hyperIn = hyper.length === 1 ? hyper[0] : g.op('Concat', hyper, { axis: 1 }); // [BP, k, C8]
  const blocked = g.matmul(up, g.transpose(hyperIn, [0, 2, 1])); // [BP, 16N, k]
  // (y, x, kh1, kw1, kh2, kw2, k) -> (k, y, kh1, kh2, x, kw1, kw2)
  const spatial = g.transpose(g.reshape(blocked, [-1, s, s, 2, 2, 2, 2, kSel]), [0, 7, 1, 3, 5, 2, 4, 6]);
  const predMasks = g.op('Reshape', [spatial, g.op('Concat', [bpb, g.constI64([kSel, 4 * s, 4 * s])], { axis: 0 })]);
  g.output('pred_masks', predMasks, 'FLOAT', ['batch', 'point_batch', kSel, 4 * s, 4 * s]);

  const iouAll = feedForward(g, DECODER_KEYS.iouPredictionHead(config.decoder.iou_head_depth), tokenRow(0)); // [BP, M]
  const iou = g.slice(iouAll, [selected[0]], [selected[0] + kSel], [1]);
  g.output('iou_scores', g.op('Reshape', [iou, g.op('Concat', [bpb, g.constI64([kSel])], { axis: 0 })]), 'FLOAT', ['batch', 'point_batch', kSel]);
  return g;
}
