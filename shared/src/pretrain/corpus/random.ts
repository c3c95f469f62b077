// Draws the corpus needs beyond SampleRng's: choices, log-uniform sizes, and a fast per-pixel noise stream.
import type { SampleRng } from '../sample.ts';

export function pick<T>(rng: SampleRng, items: readonly T[]): T {
  if (!items.length) throw new RangeError('pick: empty list');
  return items[Math.min(items.length - 1, Math.floor(rng.next() * items.length))]!;
}

/** Index drawn with probability proportional to weights. */
export function weighted(rng: SampleRng, weights: readonly number[]): number {
  const total = weights.reduce((a, b) => a + b, 0);
  let r = rng.next() * total;
  for (let i = 0; i < weights.length; i++) {
    r -= weights[i]!;
    if (r < 0) return i;
  }
  return weights.length - 1;
}

/** Log-uniform in [lo, hi): as many small things as large ones, per octave. */
export function logUniform(rng: SampleRng, lo: number, hi: number): number {
  return Math.exp(rng.float(Math.log(lo), Math.log(hi)));
}

/**
 * Per-pixel noise without a method call and a log per draw (a 256x256 image needs 65k draws per channel):
 * xorshift32 seeded from the sample's stream, so still a pure function of (seed, index).
 */
export class PixelNoise {
  private s: number;
  constructor(rng: SampleRng) {
    this.s = (rng.int(1, 0x7fffffff) | 0) || 1;
  }
  /** Uniform in [0, 1). */
  uniform(): number {
    let s = this.s;
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    this.s = s;
    return (s >>> 0) / 4294967296;
  }
  /** Standard normal, quantized to 4096 levels (one table look-up per draw; plenty for image noise). */
  normal(): number {
    let s = this.s;
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    this.s = s;
    return NORMAL_TABLE[s & 4095]!;
  }
}

/** Φ⁻¹((k + ½) / 4096), k = 0..4095, by bisection on erf (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7). */
const NORMAL_TABLE = (() => {
  const erf = (x: number) => {
    const t = 1 / (1 + 0.3275911 * Math.abs(x));
    const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-x * x);
    return x < 0 ? -y : y;
  };
  const table = new Float32Array(4096);
  for (let k = 0; k < 4096; k++) {
    const p = (k + 0.5) / 4096;
    let lo = -6, hi = 6;
    for (let it = 0; it < 40; it++) {
      const mid = (lo + hi) / 2;
      if (0.5 * (1 + erf(mid / Math.SQRT2)) < p) lo = mid;
      else hi = mid;
    }
    table[k] = (lo + hi) / 2;
  }
  return table;
})();
