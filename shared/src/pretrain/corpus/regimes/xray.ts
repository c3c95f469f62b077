// Radiograph-like: smooth overlapping densities, strong scatter blur, a dark collimated border, often bright
// (dense) objects; sometimes displayed inverted.
import type { Regime } from './regime.ts';
import { addGaussian, addScaled, grayShift } from './regime.ts';
import { fractalNoise } from '../textures/fractalNoise.ts';
import { gradient } from '../textures/gradient.ts';
import { boxBlur } from '../raster.ts';

export const xray: Regime = {
  name: 'xray',
  channels: 1,
  brightShare: 0.75,
  background(w, h, rng) {
    const p = new Float32Array(w * h).fill(rng.float(0.15, 0.45));
    addScaled(p, fractalNoise(w, h, rng, { cells: rng.int(1, 4), octaves: 3, persistence: 0.45 }), rng.float(0.1, 0.25));
    addScaled(p, gradient(w, h, rng), rng.float(0, 0.15));
    return [p];
  },
  objectColour: (bg, contrast, polarity) => grayShift(bg, contrast, polarity),
  finish(planes, w, h, rng, noise) {
    const p = planes[0]!;
    boxBlur(p, w, h, rng.int(1, 2), rng.int(1, 2));
    addGaussian(p, rng.float(0.003, 0.03), noise);
    if (rng.bool(0.3)) for (let i = 0; i < p.length; i++) p[i] = 1 - p[i]!;
    return planes;
  },
};
