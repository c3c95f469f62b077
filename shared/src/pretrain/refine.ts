// Halve a trained model's patch side (`fedsam pretrain --init DIR --halve-patches`): the embedding grid doubles
// (fedsam-tiny: 16×16 → 32×32 over 256 px), so the mask decoder's low-res masks do too (64 → 128 px) and each image
// token describes 8×8 pixels instead of 16×16. The new model starts close to the trained one seeing the image at
// twice the size: an 8-pixel patch's embedding is the trained 16-pixel embedding of that patch upsampled 2× (nearest),
// the position tables are resampled to the finer grid, and windows keep their extent in pixels (twice the patches).
// It is not exact (the neck's 3×3 convolution and attention now see neighbours at half the distance); further
// pretraining adapts it.
import { parseSamConfig, type SamConfig } from '../config.ts';
import { VISION_KEYS, visionLayerKeys, weightOf } from '../checkpoint/keys.ts';
import type { HostTensor } from '../safetensors.ts';
import type { SamCheckpoint } from '../checkpoint/load.ts';

const f32 = (shape: number[], data: Float32Array): HostTensor => ({ dtype: 'float32', shape, data });

/** A table of relative positions (2n−1 rows, row n−1 = distance 0) resampled to 2(2n)−1 rows at half the step. */
export function refineRelPos(t: HostTensor): HostTensor {
  const [rows, dim] = t.shape as [number, number];
  const src = t.data as Float32Array;
  const n = (rows + 1) / 2, outRows = 2 * (2 * n) - 1;
  const out = new Float32Array(outRows * dim);
  for (let j = 0; j < outRows; j++) {
    // new distance j − (2n−1) in fine patches is half that in trained patches
    const pos = Math.min(rows - 1, Math.max(0, (j - (2 * n - 1)) / 2 + (n - 1)));
    const i0 = Math.min(rows - 2, Math.floor(pos)), f = pos - i0;
    for (let d = 0; d < dim; d++) out[j * dim + d] = src[i0 * dim + d]! * (1 - f) + src[(i0 + 1) * dim + d]! * f;
  }
  return f32([outRows, dim], out);
}

/** The absolute position embedding [1, g, g, c] resampled bilinearly (pixel centres) to [1, 2g, 2g, c]. */
export function refinePosEmbed(t: HostTensor): HostTensor {
  const [, g, , c] = t.shape as [number, number, number, number];
  const src = t.data as Float32Array, G = 2 * g;
  const out = new Float32Array(G * G * c);
  const at = (v: number) => { const p = Math.min(g - 1, Math.max(0, (v + 0.5) / 2 - 0.5)); const i0 = Math.min(g - 2, Math.floor(p)); return [i0, p - i0] as const; };
  for (let y = 0; y < G; y++) {
    const [y0, fy] = at(y);
    for (let x = 0; x < G; x++) {
      const [x0, fx] = at(x);
      for (let k = 0; k < c; k++) {
        const v = (yy: number, xx: number) => src[(yy * g + xx) * c + k]!;
        out[(y * G + x) * c + k] = (v(y0, x0) * (1 - fx) + v(y0, x0 + 1) * fx) * (1 - fy) + (v(y0 + 1, x0) * (1 - fx) + v(y0 + 1, x0 + 1) * fx) * fy;
      }
    }
  }
  return f32([1, G, G, c], out);
}

/** The patch embedding [c, ch, p, p] of p-pixel patches as one of p/2-pixel patches upsampled 2× (each 2×2 block summed). */
export function halvePatchEmbedding(t: HostTensor): HostTensor {
  const [c, ch, p] = t.shape as [number, number, number, number];
  const q = p / 2, src = t.data as Float32Array;
  const out = new Float32Array(c * ch * q * q);
  for (let o = 0; o < c * ch; o++) {
    for (let i = 0; i < q; i++) for (let j = 0; j < q; j++) {
      let s = 0;
      for (let a = 0; a < 2; a++) for (let b = 0; b < 2; b++) s += src[o * p * p + (2 * i + a) * p + 2 * j + b]!;
      out[o * q * q + i * q + j] = s;
    }
  }
  return f32([c, ch, q, q], out);
}

/** `config` with the patch side halved (it must be even), the grid and the windows' side in patches doubled. */
export function halvedPatchConfig(config: SamConfig): SamConfig {
  const v = config.vision;
  if (v.patch_size % 2 || v.patch_size < 4) throw new RangeError(`--halve-patches needs an even patch side of at least 4, the model has ${v.patch_size}`);
  const raw = config.raw;
  return parseSamConfig({
    ...raw,
    vision_config: { ...raw.vision_config, patch_size: v.patch_size / 2, window_size: 2 * v.window_size },
    prompt_encoder_config: { ...raw.prompt_encoder_config, patch_size: v.patch_size / 2, image_embedding_size: 2 * v.gridSize },
  }, 'refined config');
}

/** `config` and `weights` refined to half the patch side (halvedPatchConfig). */
export function halvePatches(config: SamConfig, weights: Map<string, HostTensor>): SamCheckpoint {
  const refined = halvedPatchConfig(config);
  const v = config.vision;
  const out = new Map(weights);
  const patch = weightOf(VISION_KEYS.patchEmbed);
  out.set(patch, halvePatchEmbedding(weights.get(patch)!));
  if (v.use_abs_pos) out.set(VISION_KEYS.posEmbed, refinePosEmbed(weights.get(VISION_KEYS.posEmbed)!));
  if (v.use_rel_pos) {
    for (let i = 0; i < v.num_hidden_layers; i++) {
      const { relPosH, relPosW } = visionLayerKeys(i).attn;
      for (const k of [relPosH, relPosW]) out.set(k, refineRelPos(weights.get(k)!));
    }
  }
  return { config: refined, weights: out };
}
