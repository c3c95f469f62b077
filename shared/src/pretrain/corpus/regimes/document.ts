// Paper-like: light paper with fibre texture and stains, dark ink objects (drawings, glyphs, stamps), slight blur.
import type { Regime } from './regime.ts';
import { addGaussian, addScaled, colourShift } from './regime.ts';
import { fractalNoise } from '../textures/fractalNoise.ts';
import { boxBlur } from '../raster.ts';

export const documentPaper: Regime = {
  name: 'document',
  channels: 3,
  brightShare: 0.1,
  background(w, h, rng) {
    const paper = [rng.float(0.8, 0.98), rng.float(0.78, 0.96), rng.float(0.7, 0.93)];
    const stains = fractalNoise(w, h, rng, { cells: rng.int(2, 6), octaves: 3, persistence: 0.5 });
    const fibre = fractalNoise(w, h, rng, { cells: 64, octaves: 2, persistence: 0.6 });
    const s = rng.float(0, 0.08), f = rng.float(0, 0.04);
    return paper.map((b) => {
      const p = new Float32Array(w * h).fill(b);
      addScaled(p, stains, s);
      addScaled(p, fibre, f);
      return p;
    });
  },
  objectColour: (bg, contrast, polarity, rng) => colourShift(bg, Math.min(1, contrast * 1.5), polarity, rng),
  finish(planes, w, h, rng, noise) {
    const blur = rng.bool(0.6), sigma = rng.float(0.002, 0.02);
    for (const p of planes) {
      if (blur) boxBlur(p, w, h, 1, 1);
      addGaussian(p, sigma, noise);
    }
    return planes;
  },
};
