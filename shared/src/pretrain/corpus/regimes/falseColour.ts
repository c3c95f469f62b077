// False-colour (held out from pretraining): a smooth gray scene (maps, thermal images, parametric maps) shown
// through a colour map, so object edges are hue changes as much as brightness changes.
import type { Regime } from './regime.ts';
import { addGaussian, addScaled, grayShift } from './regime.ts';
import { fractalNoise } from '../textures/fractalNoise.ts';
import { boxBlur } from '../raster.ts';
import { pick } from '../random.ts';

const MAPS = [
  [[0, 0, 0.5], [0, 0.5, 1], [0.5, 1, 0.5], [1, 0.8, 0], [0.6, 0, 0]], // jet-like
  [[0.27, 0, 0.33], [0.23, 0.32, 0.55], [0.13, 0.57, 0.55], [0.37, 0.79, 0.38], [0.99, 0.91, 0.14]], // viridis-like
  [[0, 0, 0], [0.6, 0, 0], [1, 0.5, 0], [1, 0.9, 0.3], [1, 1, 1]], // hot
];

export const falseColour: Regime = {
  name: 'false-colour',
  channels: 1,
  brightShare: 0.5,
  background(w, h, rng) {
    const p = new Float32Array(w * h).fill(rng.float(0.2, 0.7));
    addScaled(p, fractalNoise(w, h, rng, { cells: rng.int(1, 6), octaves: 4, persistence: rng.float(0.35, 0.6) }), rng.float(0.1, 0.3));
    return [p];
  },
  objectColour: (bg, contrast, polarity) => grayShift(bg, contrast, polarity),
  finish(planes, w, h, rng, noise) {
    const g = planes[0]!;
    boxBlur(g, w, h, 1, 1);
    addGaussian(g, rng.float(0.002, 0.02), noise);
    const map = pick(rng, MAPS), last = map.length - 1;
    const out = [0, 1, 2].map(() => new Float32Array(w * h));
    for (let i = 0; i < g.length; i++) {
      const t = Math.min(1, Math.max(0, g[i]!)) * last, k = Math.min(last - 1, Math.floor(t)), f = t - k;
      for (let c = 0; c < 3; c++) out[c]![i] = map[k]![c]! * (1 - f) + map[k + 1]![c]! * f;
    }
    return out;
  },
};
