// The parameters of HF SamModel (transformers' modeling_sam.py), declared once: their names (the key builders
// below, named after HF's module classes) and, for a config, their shapes and module kinds (samParameters). The
// checkpoint loader and saver check files against it, init.ts draws values by module kind, and the model
// (model/*.ts) looks its weights up through the same builders.
import type { SamConfig } from '../config.ts';

export type SamPart = 'vision_encoder' | 'prompt_encoder' | 'mask_decoder' | 'shared_image_embedding';
export const SAM_PARTS: readonly SamPart[] = ['vision_encoder', 'prompt_encoder', 'mask_decoder', 'shared_image_embedding'];

/** Which part a parameter name belongs to (its first path component), or undefined. */
export function samPartOf(name: string): SamPart | undefined {
  const head = name.split('.', 1)[0];
  return (SAM_PARTS as readonly string[]).includes(head!) ? (head as SamPart) : undefined;
}

/** Old transformers releases spelled `upscale_layer_norm` as `upsacle_layer_norm`. */
export function normalizeSamKey(name: string): string {
  return name.startsWith('mask_decoder.upsacle_layer_norm.') ? name.replace('.upsacle_layer_norm.', '.upscale_layer_norm.') : name;
}

/** The torch module a parameter belongs to (or a bare nn.Parameter / buffer): how init.ts draws it. */
export type ModuleKind = 'Linear' | 'Conv2d' | 'ConvTranspose2d' | 'LayerNorm' | 'Embedding' | 'Parameter' | 'Buffer';

export interface SamParameter {
  shape: number[];
  module: ModuleKind;
  /** The output projection of a residual branch in a vision block (attn.proj, mlp.lin2): init.ts scales it. */
  residualOut?: boolean;
}

export const weightOf = (module: string): string => `${module}.weight`;
export const biasOf = (module: string): string => `${module}.bias`;

// ---------------------------------------------------------------------------------------------------------------
// key builders (module paths; a module's tensors are weightOf(path) / biasOf(path))

/** SamPositionalEmbedding: random Fourier features [2, num_pos_feats], a buffer. */
export const SHARED_POS_EMBED_KEY = 'shared_image_embedding.positional_embedding';
/** The prompt encoder's tie to SHARED_POS_EMBED_KEY (one tensor in HF; save_pretrained does not store it). */
export const TIED_POS_EMBED_KEY = 'prompt_encoder.shared_embedding.positional_embedding';

/** SamVisionLayer i: layer_norm1, attn (SamVisionAttention), layer_norm2, mlp (SamMLPBlock). */
export function visionLayerKeys(i: number) {
  const p = `vision_encoder.layers.${i}`;
  return {
    layerNorm1: `${p}.layer_norm1`,
    attn: { qkv: `${p}.attn.qkv`, proj: `${p}.attn.proj`, relPosH: `${p}.attn.rel_pos_h`, relPosW: `${p}.attn.rel_pos_w` },
    layerNorm2: `${p}.layer_norm2`,
    mlp: { lin1: `${p}.mlp.lin1`, lin2: `${p}.mlp.lin2` },
  };
}

/** SamVisionEncoder. */
export const VISION_KEYS = {
  /** SamPatchEmbeddings.projection: Conv2d(num_channels, hidden_size, kernel = stride = patch_size). */
  patchEmbed: 'vision_encoder.patch_embed.projection',
  /** Absolute position embedding [1, grid, grid, hidden_size] (an nn.Parameter). */
  posEmbed: 'vision_encoder.pos_embed',
  layer: visionLayerKeys,
  /** SamVisionNeck: 1x1 conv, LayerNorm, 3x3 conv, LayerNorm (convs without bias). */
  neck: {
    conv1: 'vision_encoder.neck.conv1', layerNorm1: 'vision_encoder.neck.layer_norm1',
    conv2: 'vision_encoder.neck.conv2', layerNorm2: 'vision_encoder.neck.layer_norm2',
  },
};

/** SamPromptEncoder. */
export const PROMPT_KEYS = {
  /** SamMaskEmbedding: mask prompt -> dense embedding. */
  maskEmbed: {
    conv1: 'prompt_encoder.mask_embed.conv1', layerNorm1: 'prompt_encoder.mask_embed.layer_norm1',
    conv2: 'prompt_encoder.mask_embed.conv2', layerNorm2: 'prompt_encoder.mask_embed.layer_norm2',
    conv3: 'prompt_encoder.mask_embed.conv3',
  },
  noMaskEmbed: 'prompt_encoder.no_mask_embed',
  /** point_embed.0 negative point, .1 positive point, .2 / .3 box corners. */
  pointEmbed: (i: number) => `prompt_encoder.point_embed.${i}`,
  notAPointEmbed: 'prompt_encoder.not_a_point_embed',
};

/** SamAttention (the decoder's): q/k/v/out projections. */
export function attentionKeys(p: string) {
  return { q: `${p}.q_proj`, k: `${p}.k_proj`, v: `${p}.v_proj`, out: `${p}.out_proj` };
}

/** SamTwoWayAttentionBlock i of the decoder's SamTwoWayTransformer. */
export function twoWayBlockKeys(i: number) {
  const p = `mask_decoder.transformer.layers.${i}`;
  return {
    selfAttn: attentionKeys(`${p}.self_attn`),
    layerNorm1: `${p}.layer_norm1`,
    crossAttnTokenToImage: attentionKeys(`${p}.cross_attn_token_to_image`),
    layerNorm2: `${p}.layer_norm2`,
    mlp: { lin1: `${p}.mlp.lin1`, lin2: `${p}.mlp.lin2` },
    layerNorm3: `${p}.layer_norm3`,
    layerNorm4: `${p}.layer_norm4`,
    crossAttnImageToToken: attentionKeys(`${p}.cross_attn_image_to_token`),
  };
}

/** SamFeedForward(depth): proj_in, layers.0 .. layers.(depth-3), proj_out. */
export function feedForwardKeys(p: string, depth: number) {
  return { projIn: `${p}.proj_in`, layers: Array.from({ length: depth - 2 }, (_, j) => `${p}.layers.${j}`), projOut: `${p}.proj_out` };
}

/** Depth of the decoder's output hypernetwork MLPs (HF: SamFeedForward(hidden, hidden, hidden / 8, 3)). */
export const HYPERNETWORK_DEPTH = 3;

/** SamMaskDecoder. */
export const DECODER_KEYS = {
  iouToken: 'mask_decoder.iou_token',
  maskTokens: 'mask_decoder.mask_tokens',
  /** SamTwoWayTransformer. */
  transformer: {
    layer: twoWayBlockKeys,
    finalAttnTokenToImage: attentionKeys('mask_decoder.transformer.final_attn_token_to_image'),
    layerNormFinalAttn: 'mask_decoder.transformer.layer_norm_final_attn',
  },
  /** ConvTranspose2d 2x2 stride 2 (weights [in, out, 2, 2]). */
  upscaleConv1: 'mask_decoder.upscale_conv1',
  upscaleLayerNorm: 'mask_decoder.upscale_layer_norm',
  upscaleConv2: 'mask_decoder.upscale_conv2',
  /** Output hypernetwork MLP i (SamFeedForward) of mask token i: its module path, its modules. */
  hypernetworkMlpPath: (i: number) => `mask_decoder.output_hypernetworks_mlps.${i}`,
  hypernetworkMlp: (i: number) => feedForwardKeys(DECODER_KEYS.hypernetworkMlpPath(i), HYPERNETWORK_DEPTH),
  /** The IoU prediction head (SamFeedForward of iou_head_depth). */
  iouPredictionHeadPath: 'mask_decoder.iou_prediction_head',
  iouPredictionHead: (depth: number) => feedForwardKeys(DECODER_KEYS.iouPredictionHeadPath, depth),
};

// ---------------------------------------------------------------------------------------------------------------
// the parameters of a config

/**
 * Every parameter (and persistent buffer) of HF `SamModel` for this config, with its shape and module kind, in
 * module order (modeling_sam.py). Includes the tied TIED_POS_EMBED_KEY, as `model.state_dict()` does.
 */
export function samParameters(config: SamConfig): Map<string, SamParameter> {
  const m = new Map<string, SamParameter>();
  const put = (name: string, shape: number[], module: ModuleKind, residualOut = false) =>
    m.set(name, residualOut ? { shape, module, residualOut } : { shape, module });
  const linear = (p: string, out: number, inp: number, bias = true, residualOut = false) => {
    put(weightOf(p), [out, inp], 'Linear', residualOut);
    if (bias) put(biasOf(p), [out], 'Linear');
  };
  const norm = (p: string, n: number) => {
    put(weightOf(p), [n], 'LayerNorm');
    put(biasOf(p), [n], 'LayerNorm');
  };
  const conv = (p: string, out: number, inp: number, k: number, bias = true) => {
    put(weightOf(p), [out, inp, k, k], 'Conv2d');
    if (bias) put(biasOf(p), [out], 'Conv2d');
  };
  const embedding = (p: string, n: number, dim: number) => put(weightOf(p), [n, dim], 'Embedding');

  // shared_image_embedding: SamPositionalEmbedding(vision_config)
  const v = config.vision;
  put(SHARED_POS_EMBED_KEY, [2, v.num_pos_feats], 'Buffer');

  // vision_encoder: SamVisionEncoder
  const h = v.hidden_size;
  conv(VISION_KEYS.patchEmbed, h, v.num_channels, v.patch_size);
  if (v.use_abs_pos) put(VISION_KEYS.posEmbed, [1, v.gridSize, v.gridSize, h], 'Parameter');
  const headDim = h / v.num_attention_heads;
  for (let i = 0; i < v.num_hidden_layers; i++) {
    const L = visionLayerKeys(i);
    const window = v.global_attn_indexes.includes(i) ? 0 : v.window_size;
    const inputSize = window === 0 ? v.gridSize : window;
    norm(L.layerNorm1, h);
    linear(L.attn.qkv, 3 * h, h, v.qkv_bias);
    linear(L.attn.proj, h, h, true, true);
    if (v.use_rel_pos) {
      put(L.attn.relPosH, [2 * inputSize - 1, headDim], 'Parameter');
      put(L.attn.relPosW, [2 * inputSize - 1, headDim], 'Parameter');
    }
    norm(L.layerNorm2, h);
    linear(L.mlp.lin1, v.mlpDim, h);
    linear(L.mlp.lin2, h, v.mlpDim, true, true);
  }
  const oc = v.output_channels;
  const neck = VISION_KEYS.neck;
  conv(neck.conv1, oc, h, 1, false);
  norm(neck.layerNorm1, oc);
  conv(neck.conv2, oc, oc, 3, false);
  norm(neck.layerNorm2, oc);

  // prompt_encoder: SamPromptEncoder
  const pc = config.prompt;
  const ph = pc.hidden_size;
  put(TIED_POS_EMBED_KEY, [2, v.num_pos_feats], 'Buffer');
  const mic = pc.mask_input_channels;
  const micq = Math.floor(mic / 4);
  const me = PROMPT_KEYS.maskEmbed;
  conv(me.conv1, micq, 1, 2);
  conv(me.conv2, mic, micq, 2);
  conv(me.conv3, ph, mic, 1);
  norm(me.layerNorm1, micq);
  norm(me.layerNorm2, mic);
  embedding(PROMPT_KEYS.noMaskEmbed, 1, ph);
  for (let i = 0; i < pc.num_point_embeddings; i++) embedding(PROMPT_KEYS.pointEmbed(i), 1, ph);
  embedding(PROMPT_KEYS.notAPointEmbed, 1, ph);

  // mask_decoder: SamMaskDecoder
  const d = config.decoder;
  const dh = d.hidden_size;
  const numMaskTokens = d.num_multimask_outputs + 1;
  const D = DECODER_KEYS;
  embedding(D.iouToken, 1, dh);
  embedding(D.maskTokens, numMaskTokens, dh);
  const attention = (a: ReturnType<typeof attentionKeys>, downsample: number) => {
    const internal = Math.floor(dh / downsample);
    linear(a.q, internal, dh);
    linear(a.k, internal, dh);
    linear(a.v, internal, dh);
    linear(a.out, dh, internal);
  };
  for (let i = 0; i < d.num_hidden_layers; i++) {
    const B = twoWayBlockKeys(i);
    attention(B.selfAttn, 1);
    norm(B.layerNorm1, dh);
    attention(B.crossAttnTokenToImage, d.attention_downsample_rate);
    norm(B.layerNorm2, dh);
    linear(B.mlp.lin1, d.mlp_dim, dh);
    linear(B.mlp.lin2, dh, d.mlp_dim);
    norm(B.layerNorm3, dh);
    norm(B.layerNorm4, dh);
    attention(B.crossAttnImageToToken, d.attention_downsample_rate);
  }
  attention(D.transformer.finalAttnTokenToImage, d.attention_downsample_rate);
  norm(D.transformer.layerNormFinalAttn, dh);
  // ConvTranspose2d weights are [in, out, k, k]
  const convT = (p: string, inp: number, out: number) => {
    put(weightOf(p), [inp, out, 2, 2], 'ConvTranspose2d');
    put(biasOf(p), [out], 'ConvTranspose2d');
  };
  convT(D.upscaleConv1, dh, dh / 4);
  convT(D.upscaleConv2, dh / 4, dh / 8);
  norm(D.upscaleLayerNorm, dh / 4);
  const feedForward = (f: ReturnType<typeof feedForwardKeys>, inp: number, hidden: number, out: number) => {
    linear(f.projIn, hidden, inp);
    for (const l of f.layers) linear(l, hidden, hidden);
    linear(f.projOut, out, hidden);
  };
  for (let i = 0; i < numMaskTokens; i++) feedForward(D.hypernetworkMlp(i), dh, dh, dh / 8);
  feedForward(D.iouPredictionHead(d.iou_head_depth), dh, d.iou_head_hidden_dim, numMaskTokens);
  return m;
}

/** Name -> shape of every parameter of samParameters(config), in module order. */
export function expectedSamParameters(config: SamConfig): Map<string, number[]> {
  return new Map([...samParameters(config)].map(([name, p]) => [name, p.shape]));
}
