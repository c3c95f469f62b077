// Stripes at any angle and period, straight or warped, sine or square (fabric, muscle fibres, wood, MR motion ghosts).
import type { SampleRng } from '../../sample.ts';
import { fractalNoise } from './fractalNoise.ts';

/** A w x h plane in [-1, 1]. */
export function stripes(w: number, h: number, rng: SampleRng): Float32Array {
  const out = new Float32Array(w * h);
  const a = rng.float(0, Math.PI), period = rng.float(3, Math.max(w, h) / 4), k = (2 * Math.PI) / period;
  const c = Math.cos(a) * k, s = Math.sin(a) * k, ph = rng.float(0, 2 * Math.PI);
  const warp = rng.bool(0.5) ? fractalNoise(w, h, rng, { cells: rng.int(2, 5), octaves: 2, persistence: 0.5 }) : null;
  const warpAmp = rng.float(2, 8);
  const square = rng.bool(0.3);
  for (let y = 0, i = 0; y < h; y++) {
    for (let x = 0; x < w; x++, i++) {
      const v = Math.sin(x * c + y * s + ph + (warp ? warpAmp * warp[i]! : 0));
      out[i] = square ? (v > 0 ? 1 : -1) : v;
    }
  }
  return out;
}
