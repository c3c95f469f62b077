// MR-like: smooth soft-tissue texture inside a body outline, a multiplicative coil bias field, Rician noise,
// objects of either polarity.
import type { Regime } from './regime.ts';
import { addScaled, grayShift, maskOutsideEllipse } from './regime.ts';
import { fractalNoise } from '../textures/fractalNoise.ts';
import { gradient } from '../textures/gradient.ts';
import { boxBlur } from '../raster.ts';

export const mr: Regime = {
  name: 'mr',
  channels: 1,
  brightShare: 0.5,
  background(w, h, rng) {
    const p = new Float32Array(w * h).fill(rng.float(0.2, 0.5));
    addScaled(p, fractalNoise(w, h, rng, { cells: rng.int(2, 6), octaves: 4, persistence: rng.float(0.35, 0.6) }), rng.float(0.05, 0.2));
    if (rng.bool(0.5)) maskOutsideEllipse(p, w, h, w / 2 + rng.float(-0.1, 0.1) * w, h / 2, w * rng.float(0.4, 0.6), h * rng.float(0.4, 0.6), rng.float(0, 0.05));
    return [p];
  },
  objectColour: (bg, contrast, polarity) => grayShift(bg, contrast, polarity),
  finish(planes, w, h, rng, noise) {
    const p = planes[0]!;
    if (rng.bool(0.6)) boxBlur(p, w, h, 1, 1);
    const bias = gradient(w, h, rng), k = rng.float(0, 0.3);
    const sigma = rng.float(0.005, 0.06);
    for (let i = 0; i < p.length; i++) {
      const v = p[i]! * (1 + k * bias[i]!);
      const re = v + sigma * noise.normal(), im = sigma * noise.normal();
      p[i] = Math.sqrt(re * re + im * im); // magnitude of complex data: Rician
    }
    return planes;
  },
};
