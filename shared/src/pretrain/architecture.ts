// The architecture a pretraining run builds: a few knobs (layers, widths, input size) turned into an HF SamConfig.
// One source of defaults: these give the shape the built-in fedsam-tiny was first pretrained in; the shipped model is that
// shape with its patches halved (refine.ts; shared/models/fedsam-tiny/config.json; a test checks).
import { z } from 'zod';
import { parseSamConfig, type SamConfig } from '../config.ts';
import { samParameters, TIED_POS_EMBED_KEY } from '../checkpoint/keys.ts';

export const PretrainArchitectureSchema = z.object({
  /** Vision transformer blocks. */
  layers: z.number().int().min(1).max(24).default(2),
  /** Vision transformer width (hidden_size). */
  width: z.number().int().min(8).default(64),
  /** Vision attention heads (width must divide by it). */
  heads: z.number().int().min(1).default(2),
  /** Model input side in pixels. */
  imageSize: z.number().int().min(16).default(256),
  /** Patch side; the embedding grid is imageSize/patchSize. */
  patchSize: z.number().int().min(2).default(16),
  /** Window side of the windowed attention blocks (in patches). */
  windowSize: z.number().int().min(1).default(8),
  /** Width of the image embedding, prompt tokens and mask decoder (vision output_channels = decoder hidden_size). */
  decoderWidth: z.number().int().min(8).default(64),
  decoderLayers: z.number().int().min(1).default(2),
  decoderHeads: z.number().int().min(1).default(4),
  /** Blocks with global attention; default: every second block and the last. */
  globalAttnIndexes: z.array(z.number().int().nonnegative()).optional(),
}).strict();

export type PretrainArchitecture = z.output<typeof PretrainArchitectureSchema>;

/** Parse an architecture (JSON object or `key=value,...` string, e.g. "layers=4,width=128"), with a message that names the bad key. */
export function parseArchitecture(spec: unknown): PretrainArchitecture {
  let obj = spec;
  if (typeof spec === 'string') {
    obj = Object.fromEntries(spec.split(',').filter((s) => s.trim()).map((kv) => {
      const [k, v] = kv.split('=').map((s) => s.trim());
      if (!k || v === undefined) throw new Error(`architecture "${spec}": write key=value pairs separated by commas, e.g. layers=4,width=128`);
      return [k, k === 'globalAttnIndexes' ? v.split(/[;\s]+/).filter(Boolean).map(Number) : Number(v)];
    }));
  }
  const r = PretrainArchitectureSchema.safeParse(obj ?? {});
  if (!r.success) {
    const why = r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new Error(`invalid architecture: ${why} (keys: ${Object.keys(PretrainArchitectureSchema.shape).join(', ')})`);
  }
  const a = r.data;
  if (a.width % a.heads) throw new Error(`architecture: width ${a.width} must be divisible by heads ${a.heads}`);
  if (a.decoderWidth % a.decoderHeads || a.decoderWidth % 2) throw new Error(`architecture: decoderWidth ${a.decoderWidth} must be even and divisible by decoderHeads ${a.decoderHeads}`);
  if (a.imageSize % a.patchSize) throw new Error(`architecture: imageSize ${a.imageSize} must be a multiple of patchSize ${a.patchSize}`);
  return a;
}

/** The HF SamConfig of an architecture. */
export function architectureConfig(arch: Partial<PretrainArchitecture> = {}, source = 'pretrain architecture'): SamConfig {
  const a = parseArchitecture(arch);
  const grid = a.imageSize / a.patchSize;
  const global = a.globalAttnIndexes ?? Array.from({ length: a.layers }, (_, i) => i).filter((i) => i % 2 === 1 || i === a.layers - 1);
  return parseSamConfig({
    vision_config: {
      hidden_size: a.width, output_channels: a.decoderWidth, num_hidden_layers: a.layers, num_attention_heads: a.heads,
      image_size: a.imageSize, patch_size: a.patchSize, window_size: a.windowSize, global_attn_indexes: global,
      mlp_dim: 4 * a.width, num_pos_feats: a.decoderWidth / 2,
    },
    prompt_encoder_config: { hidden_size: a.decoderWidth, image_size: a.imageSize, patch_size: a.patchSize, image_embedding_size: grid, mask_input_channels: 16 },
    mask_decoder_config: { hidden_size: a.decoderWidth, mlp_dim: 4 * a.decoderWidth, num_hidden_layers: a.decoderLayers, num_attention_heads: a.decoderHeads, iou_head_hidden_dim: a.decoderWidth },
  }, source);
}

/** Parameter count and float32 size in bytes of a config (every tensor of samParameters, the tied embedding once). */
export function configSize(config: SamConfig): { parameters: number; bytes: number } {
  let n = 0;
  for (const [name, p] of samParameters(config)) if (name !== TIED_POS_EMBED_KEY) n += p.shape.reduce((a, b) => a * b, 1);
  return { parameters: n, bytes: 4 * n };
}
