// SAM configuration as HuggingFace's SamConfig defines it (config.json of any SamModel folder).
// One schema, one set of defaults (sam-vit-base, the HF defaults); every shape in the model comes from here.
import { z } from 'zod';

export const SamVisionConfigSchema = z.object({
  hidden_size: z.number().int().positive().default(768),
  output_channels: z.number().int().positive().default(256),
  num_hidden_layers: z.number().int().positive().default(12),
  num_attention_heads: z.number().int().positive().default(12),
  num_channels: z.number().int().positive().default(3),
  image_size: z.number().int().positive().default(1024),
  patch_size: z.number().int().positive().default(16),
  hidden_act: z.string().default('gelu'),
  layer_norm_eps: z.number().positive().default(1e-6),
  qkv_bias: z.boolean().default(true),
  mlp_ratio: z.number().positive().default(4.0),
  use_abs_pos: z.boolean().default(true),
  use_rel_pos: z.boolean().default(true),
  window_size: z.number().int().nonnegative().default(14),
  global_attn_indexes: z.array(z.number().int().nonnegative()).default([2, 5, 8, 11]),
  num_pos_feats: z.number().int().positive().default(128),
  mlp_dim: z.number().int().positive().nullable().optional(),
}).passthrough();

export const SamPromptEncoderConfigSchema = z.object({
  hidden_size: z.number().int().positive().default(256),
  image_size: z.number().int().positive().default(1024),
  patch_size: z.number().int().positive().default(16),
  mask_input_channels: z.number().int().positive().default(16),
  num_point_embeddings: z.number().int().positive().default(4),
  hidden_act: z.string().default('gelu'),
  layer_norm_eps: z.number().positive().default(1e-6),
  image_embedding_size: z.number().int().positive().optional(),
}).passthrough();

export const SamMaskDecoderConfigSchema = z.object({
  hidden_size: z.number().int().positive().default(256),
  hidden_act: z.string().default('relu'),
  mlp_dim: z.number().int().positive().default(2048),
  num_hidden_layers: z.number().int().positive().default(2),
  num_attention_heads: z.number().int().positive().default(8),
  attention_downsample_rate: z.number().int().positive().default(2),
  num_multimask_outputs: z.number().int().positive().default(3),
  iou_head_depth: z.number().int().positive().default(3),
  iou_head_hidden_dim: z.number().int().positive().default(256),
  layer_norm_eps: z.number().positive().default(1e-6),
}).passthrough();

export const SamConfigSchema = z.object({
  model_type: z.string().default('sam'),
  vision_config: SamVisionConfigSchema.default({}),
  prompt_encoder_config: SamPromptEncoderConfigSchema.default({}),
  mask_decoder_config: SamMaskDecoderConfigSchema.default({}),
  initializer_range: z.number().default(0.02),
}).passthrough();

export type SamConfigJson = z.input<typeof SamConfigSchema>;

/** Resolved configuration: HF values plus the derived sizes the graph needs. */
export interface SamConfig {
  raw: z.output<typeof SamConfigSchema>;
  vision: z.output<typeof SamVisionConfigSchema> & { mlpDim: number; gridSize: number };
  prompt: z.output<typeof SamPromptEncoderConfigSchema> & { imageEmbeddingSize: number };
  decoder: z.output<typeof SamMaskDecoderConfigSchema>;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parse a config.json object (HF layout) into a resolved SamConfig; throws ConfigError listing every problem. */
export function parseSamConfig(json: unknown, source = 'config.json'): SamConfig {
  const parsed = SamConfigSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new ConfigError(`${source} is not a valid SAM config: ${problems}`);
  }
  const raw = parsed.data;
  const v = raw.vision_config;
  const gridSize = Math.floor(v.image_size / v.patch_size);
  const mlpDim = v.mlp_dim ?? Math.floor(v.hidden_size * v.mlp_ratio);
  const p = raw.prompt_encoder_config;
  const imageEmbeddingSize = p.image_embedding_size ?? Math.floor(p.image_size / p.patch_size);
  if (v.hidden_size % v.num_attention_heads !== 0) {
    throw new ConfigError(`${source}: vision_config.hidden_size ${v.hidden_size} is not divisible by num_attention_heads ${v.num_attention_heads}`);
  }
  const d = raw.mask_decoder_config;
  if (d.hidden_size % d.num_attention_heads !== 0) {
    throw new ConfigError(`${source}: mask_decoder_config.hidden_size is not divisible by num_attention_heads`);
  }
  if (imageEmbeddingSize !== gridSize) {
    throw new ConfigError(`${source}: prompt_encoder_config image embedding size ${imageEmbeddingSize} differs from the vision grid ${gridSize}`);
  }
  return {
    raw,
    vision: { ...v, mlpDim, gridSize },
    prompt: { ...p, imageEmbeddingSize },
    decoder: d,
  };
}

/** The JSON we write next to model.safetensors (save_pretrained layout). */
export function samConfigToJson(config: SamConfig): Record<string, unknown> {
  return {
    architectures: ['SamModel'],
    torch_dtype: 'float32',
    transformers_version: '4.47.1',
    ...config.raw,
    model_type: 'sam',
    vision_config: { model_type: 'sam_vision_model', ...config.raw.vision_config },
  };
}

/** sam-vit-base (facebook/sam-vit-base) configuration: the HF defaults. */
export function samVitBaseConfig(): SamConfig {
  return parseSamConfig({});
}
