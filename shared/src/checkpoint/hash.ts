// Hashes of named tensors: the order-independent weights hash (base model identity, the embedding cache's key) and
// the content version of a global decoder (Task.global_version).
import { createHash } from 'node:crypto';
import type { HostTensor } from '../safetensors.ts';

/**
 * Order-independent, streaming sha256 over named tensors: each tensor is hashed on its own (name, dtype, shape,
 * raw little-endian bytes), then the sorted (name, digest) list is hashed. Feed tensors as they are read.
 */
export class WeightsHasher {
  private readonly digests = new Map<string, string>();

  add(name: string, t: HostTensor): this {
    const h = createHash('sha256');
    h.update(`${name}\0${t.dtype}\0${t.shape.join(',')}\0`);
    h.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    this.digests.set(name, h.digest('hex'));
    return this;
  }

  get size(): number {
    return this.digests.size;
  }

  digest(): string {
    const h = createHash('sha256');
    h.update('fedsam-weights-v1\n');
    for (const name of [...this.digests.keys()].sort()) h.update(`${name}\t${this.digests.get(name)}\n`);
    return h.digest('hex');
  }
}

/**
 * Stable sha256 (hex) of the tensors whose name starts with `prefix` (e.g. 'vision_encoder.'): names, dtypes,
 * shapes and values. Independent of map order. With no tensor under the prefix it is the (fixed) empty-set hash.
 */
export function hashWeights(weights: Map<string, HostTensor>, prefix = ''): string {
  const hasher = new WeightsHasher();
  for (const [name, t] of weights) if (name.startsWith(prefix)) hasher.add(name, t);
  return hasher.digest();
}

/** Content version of a set of tensors: sha256 over names, shapes and float32 bytes (hex, first 16 chars). */
export function tensorsVersion(tensors: Map<string, HostTensor>): string {
  const h = createHash('sha256');
  for (const name of [...tensors.keys()].sort()) {
    const t = tensors.get(name)!;
    h.update(`${name}:${t.dtype}:${t.shape.join(',')};`);
    h.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return h.digest('hex').slice(0, 16);
}
