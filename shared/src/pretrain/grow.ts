// Deepen a trained model's vision encoder (`fedsam pretrain --init DIR --grow-layers N`): new blocks are appended
// after the trained ones, before the neck, with both residual branches' output projections (attn.proj, mlp.lin2) at
// zero. A pre-norm block whose branches add zero is the identity, so the grown model computes exactly what the
// trained one did, and further pretraining only has to learn what the new blocks add (gradients do reach the zero
// projections: their gradient is the branch's input times the upstream gradient).
import { parseSamConfig, type SamConfig } from '../config.ts';
import { visionLayerKeys, weightOf, biasOf } from '../checkpoint/keys.ts';
import { initSamWeights } from '../model/init.ts';
import type { HostTensor } from '../safetensors.ts';
import type { SamCheckpoint } from '../checkpoint/load.ts';

/**
 * The config and weights of `config` deepened to `layers` vision blocks. Trained blocks keep their attention kind;
 * a new block i has global attention if i is odd or the last (architecture.ts's rule), else windowed. The new blocks'
 * other weights are drawn as `initSamWeights(grown, seed)` draws them.
 */
export function growVisionEncoder(config: SamConfig, weights: Map<string, HostTensor>, layers: number, seed: number): SamCheckpoint {
  const old = config.vision.num_hidden_layers;
  if (!(Number.isInteger(layers) && layers > old)) throw new RangeError(`--grow-layers must be more than the model's ${old} vision blocks, got ${layers}`);
  const global = [...config.vision.global_attn_indexes];
  for (let i = old; i < layers; i++) if (i % 2 === 1 || i === layers - 1) global.push(i);
  const raw = config.raw;
  const grown = parseSamConfig({ ...raw, vision_config: { ...raw.vision_config, num_hidden_layers: layers, global_attn_indexes: global } }, 'grown config');
  const fresh = initSamWeights(grown, seed, { parts: ['vision_encoder'] });
  const out = new Map(weights);
  for (let i = old; i < layers; i++) {
    const k = visionLayerKeys(i);
    const prefix = k.layerNorm1.slice(0, k.layerNorm1.lastIndexOf('.') + 1);
    const zero = new Set([weightOf(k.attn.proj), biasOf(k.attn.proj), weightOf(k.mlp.lin2), biasOf(k.mlp.lin2)]);
    for (const [name, t] of fresh) {
      if (!name.startsWith(prefix)) continue;
      out.set(name, zero.has(name) ? { ...t, data: new Float32Array(t.data.length) } : t);
    }
  }
  return { config: grown, weights: out };
}
