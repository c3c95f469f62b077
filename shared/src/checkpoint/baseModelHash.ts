// The base model's identity (JoinRequest.base_model_hash): a hash of the frozen parts, which sites and server
// must share; only the mask decoder is trained and travels.
import type { HostTensor } from '../safetensors.ts';
import { hashWeights } from './hash.ts';
import { SAM_PARTS, samPartOf, TIED_POS_EMBED_KEY, type SamPart } from './keys.ts';

/** Parts of SAM that stay frozen during federated fine-tuning. */
export const FROZEN_PARTS: readonly SamPart[] = SAM_PARTS.filter((p) => p !== 'mask_decoder');

/**
 * hashWeights (order-independent sha256 over names, dtypes, shapes, values) of the frozen parts' tensors, without
 * the tied copy of the positional embedding (so a checkpoint gives one hash however it was loaded).
 * mask_decoder.* is ignored.
 */
export function frozenEncodersHash(weights: Map<string, HostTensor>): string {
  const frozen = new Map<string, HostTensor>();
  for (const [name, t] of weights) {
    const part = samPartOf(name);
    if (name !== TIED_POS_EMBED_KEY && part && FROZEN_PARTS.includes(part)) frozen.set(name, t);
  }
  if (frozen.size === 0) throw new Error(`no frozen encoder weights (${FROZEN_PARTS.map((p) => `${p}.*`).join(', ')}) to hash`);
  return hashWeights(frozen);
}
