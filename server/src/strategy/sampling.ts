// Client sampling (Flower's ClientManager.sample and FedAvg.num_fit_clients): which connected sites take part in a
// round, deterministic for the server's seed, the round and the attempt.
import { createHash } from 'node:crypto';

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A 32-bit seed from any parts (seed, phase, round, site, ...). */
export function hashSeed(...parts: Array<string | number>): number {
  return createHash('sha256').update(parts.join('\u0000')).digest().readUInt32LE(0);
}

/** k of the items, without replacement, deterministic for the seed. */
export function sampleSites(items: readonly string[], k: number, seed: number): string[] {
  const a = [...items].sort();
  const rng = mulberry32(seed);
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a.slice(0, Math.min(k, a.length)).sort();
}

/** How many of `available` sites a round samples: the fraction, at least `min`, at most all. */
export function sampleSize(available: number, fraction: number, min: number): number {
  return Math.min(available, Math.max(min, Math.floor(available * fraction)));
}

/** The seed of a site's local training in a round (FitConfig.seed). */
export function siteSeed(seed: number, round: number, site: string): number {
  return hashSeed(seed, round, site) % 2 ** 31;
}
