// Photo-like colour: a cluttered scene (dead-leaves clutter or coloured textures) under uneven light, objects of
// any colour, mild blur and sensor noise, a display gamma.
import type { Regime } from './regime.ts';
import { addGaussian, addScaled, colourShift } from './regime.ts';
import { deadLeaves } from '../textures/deadLeaves.ts';
import { fractalNoise, randomFractalNoise } from '../textures/fractalNoise.ts';
import { stripes } from '../textures/stripes.ts';
import { gradient } from '../textures/gradient.ts';
import { boxBlur } from '../raster.ts';

export const photo: Regime = {
  name: 'photo',
  channels: 3,
  brightShare: 0.5,
  background(w, h, rng) {
    const kind = rng.next();
    let planes: Float32Array[];
    if (kind < 0.45) {
      const sat = rng.float(0.2, 1), hueBias = [rng.next(), rng.next(), rng.next()];
      planes = deadLeaves(w, h, rng, 3, () => {
        const g = rng.next();
        return hueBias.map((b) => g * (1 - sat) + sat * (0.5 * g + 0.5 * b * rng.next()));
      });
      if (rng.bool(0.5)) for (const p of planes) boxBlur(p, w, h, rng.int(1, 3), 2); // depth of field
    } else {
      const base = [rng.next(), rng.next(), rng.next()];
      const tex = kind < 0.8 ? randomFractalNoise(w, h, rng) : stripes(w, h, rng);
      const tint = [rng.float(0.5, 1), rng.float(0.5, 1), rng.float(0.5, 1)];
      const amp = rng.float(0.05, 0.3);
      planes = base.map((b, c) => {
        const p = new Float32Array(w * h).fill(b);
        addScaled(p, tex, amp * tint[c]!);
        return p;
      });
      if (rng.bool(0.5)) {
        const fine = fractalNoise(w, h, rng, { cells: 32, octaves: 2, persistence: 0.7 });
        for (const p of planes) addScaled(p, fine, rng.float(0.02, 0.08));
      }
    }
    return planes;
  },
  objectColour: (bg, contrast, polarity, rng) => colourShift(bg, contrast, polarity, rng),
  finish(planes, w, h, rng, noise) {
    const light = gradient(w, h, rng), k = rng.float(0, 0.35), sigma = rng.float(0.002, 0.03), gamma = rng.float(0.7, 1.4);
    const blur = rng.bool(0.5);
    // display gamma through a table (a pow per pixel and channel would cost more than the rest of the sample)
    const lut = new Float32Array(1025);
    for (let j = 0; j <= 1024; j++) lut[j] = Math.pow(j / 1024, gamma);
    for (const p of planes) {
      if (blur) boxBlur(p, w, h, 1, 1);
      for (let i = 0; i < p.length; i++) {
        const v = p[i]! * (1 + k * light[i]!);
        p[i] = v <= 0 ? 0 : v >= 1 ? lut[1024]! * v : lut[Math.round(v * 1024)]!;
      }
      addGaussian(p, sigma, noise);
    }
    return planes;
  },
};
