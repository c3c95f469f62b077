// Fractal value noise: octaves of smoothly interpolated random grids. `persistence` sets the spectrum's slope
// (0.3: smooth, most power at low frequencies, like tissue and clouds; 0.8: rough, nearly flat, like gravel, bone).
import type { SampleRng } from '../../sample.ts';

export interface FractalNoiseOptions {
  /** Grid cells across the longer side at the coarsest octave. */
  cells: number;
  octaves: number;
  persistence: number;
}

/** A w x h plane with values in about [-1, 1], zero mean. */
export function fractalNoise(w: number, h: number, rng: SampleRng, o: FractalNoiseOptions): Float32Array {
  const out = new Float32Array(w * h);
  const side = Math.max(w, h);
  let amp = 1, total = 0;
  const xi = new Int32Array(w), xf = new Float32Array(w);
  for (let oct = 0, c = Math.max(1, o.cells); oct < o.octaves && c <= side; oct++, c *= 2, amp *= o.persistence) {
    const gw = c + 2;
    const g = new Float32Array(gw * gw);
    for (let i = 0; i < g.length; i++) g[i] = rng.next() * 2 - 1;
    const sc = c / side;
    for (let x = 0; x < w; x++) {
      const gx = x * sc, ix = Math.floor(gx), f = gx - ix;
      xi[x] = ix;
      xf[x] = f * f * (3 - 2 * f);
    }
    for (let y = 0; y < h; y++) {
      const gy = y * sc, iy = Math.floor(gy);
      let fy = gy - iy;
      fy = fy * fy * (3 - 2 * fy);
      const r0 = iy * gw, r1 = r0 + gw, row = y * w;
      for (let x = 0; x < w; x++) {
        const i = xi[x]!, fx = xf[x]!;
        const top = g[r0 + i]! + (g[r0 + i + 1]! - g[r0 + i]!) * fx;
        const bot = g[r1 + i]! + (g[r1 + i + 1]! - g[r1 + i]!) * fx;
        out[row + x]! += amp * (top + (bot - top) * fy);
      }
    }
    total += amp;
  }
  if (total > 0) for (let i = 0; i < out.length; i++) out[i]! /= total;
  return out;
}

/** Random spectrum: smooth, medium or rough noise with a random base scale. */
export function randomFractalNoise(w: number, h: number, rng: SampleRng): Float32Array {
  return fractalNoise(w, h, rng, { cells: rng.int(2, 16), octaves: rng.int(2, 4), persistence: rng.float(0.3, 0.85) });
}
