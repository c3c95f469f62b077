// Fluorescence-microscopy-like: a dark field with faint haze, objects glowing in one or two colour channels,
// optical blur and shot (Poisson-like) noise. Objects are always bright.
import type { Regime } from './regime.ts';
import { addScaled } from './regime.ts';
import { fractalNoise } from '../textures/fractalNoise.ts';
import { boxBlur } from '../raster.ts';
import { pick } from '../random.ts';

const DYES = [[0.1, 1, 0.2], [1, 0.15, 0.1], [0.2, 0.4, 1], [1, 0.2, 1], [0.1, 1, 1], [1, 1, 0.2], [1, 1, 1]];

export const fluorescence: Regime = {
  name: 'fluorescence',
  channels: 3,
  brightShare: 1,
  background(w, h, rng) {
    const dye = pick(rng, DYES), level = rng.float(0.01, 0.12);
    const haze = fractalNoise(w, h, rng, { cells: rng.int(2, 8), octaves: 3, persistence: 0.5 });
    return dye.map((d) => {
      const p = new Float32Array(w * h).fill(level * d);
      addScaled(p, haze, level * d * 0.5);
      return p;
    });
  },
  objectColour(bg, contrast, _polarity, rng) {
    const dye = pick(rng, DYES), k = 0.15 + 1.5 * contrast;
    return bg.map((b, c) => Math.min(1, b + k * dye[c]!));
  },
  finish(planes, w, h, rng, noise) {
    const r = rng.int(0, 2), gain = rng.float(0.002, 0.02);
    for (const p of planes) {
      if (r) boxBlur(p, w, h, r, 2);
      for (let i = 0; i < p.length; i++) p[i]! += Math.sqrt(Math.max(0, p[i]!) * gain) * noise.normal() + 0.004 * noise.normal();
    }
    return planes;
  },
};
