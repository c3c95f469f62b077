// H&E-histology-like (held out from pretraining): pink eosin stroma with fibres and white gaps, objects stained
// purple-blue by haematoxylin (nuclei, glands), colour made by Beer-Lambert absorption of two stains.
import type { Regime } from './regime.ts';
import { addGaussian } from './regime.ts';
import { fractalNoise } from '../textures/fractalNoise.ts';
import { stripes } from '../textures/stripes.ts';

// optical densities per unit stain (R, G, B)
const EOSIN = [0.07, 0.99, 0.11], HAEMATOXYLIN = [0.65, 0.7, 0.29];

function stainRGB(e: number, hm: number): number[] {
  return [0, 1, 2].map((c) => Math.exp(-(e * EOSIN[c]! + hm * HAEMATOXYLIN[c]!)));
}

export const histology: Regime = {
  name: 'histology',
  channels: 3,
  brightShare: 0.15,
  background(w, h, rng) {
    const tex = fractalNoise(w, h, rng, { cells: rng.int(3, 10), octaves: 4, persistence: 0.55 });
    const fib = stripes(w, h, rng);
    const e0 = rng.float(0.3, 0.9), hm0 = rng.float(0, 0.15), gaps = rng.float(-0.85, -0.45);
    const planes = [0, 1, 2].map(() => new Float32Array(w * h));
    const hOd = HAEMATOXYLIN.map((k) => hm0 * k);
    for (let i = 0; i < w * h; i++) {
      const e = Math.max(0, tex[i]! < gaps ? 0.05 : e0 * (1 + 0.4 * tex[i]! + 0.15 * fib[i]!));
      planes[0]![i] = Math.exp(-(e * EOSIN[0]! + hOd[0]!));
      planes[1]![i] = Math.exp(-(e * EOSIN[1]! + hOd[1]!));
      planes[2]![i] = Math.exp(-(e * EOSIN[2]! + hOd[2]!));
    }
    return planes;
  },
  objectColour(bg, contrast, polarity, rng) {
    if (polarity > 0) return bg.map((b) => Math.min(1, b + contrast)); // a clear vacuole or lumen
    const hm = 0.2 + 2.5 * contrast, e = rng.float(0, 0.6);
    const stain = stainRGB(e, hm);
    return bg.map((b, c) => Math.min(b, stain[c]!));
  },
  finish(planes, _w, _h, rng, noise) {
    const sigma = rng.float(0.003, 0.02);
    for (const p of planes) addGaussian(p, sigma, noise);
    return planes;
  },
};
