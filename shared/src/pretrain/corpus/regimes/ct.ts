// CT-like: flat tissue classes in a body with a bright bony rim, Gaussian noise, then a display window that can
// make objects flat white or black (windowing clips).
import type { Regime } from './regime.ts';
import { addGaussian, addScaled, grayShift, maskOutsideEllipse } from './regime.ts';
import { fractalNoise } from '../textures/fractalNoise.ts';
import { boxBlur } from '../raster.ts';

export const ct: Regime = {
  name: 'ct',
  channels: 1,
  brightShare: 0.6,
  background(w, h, rng) {
    const tissue = rng.float(0.35, 0.55);
    const p = new Float32Array(w * h).fill(tissue);
    addScaled(p, fractalNoise(w, h, rng, { cells: rng.int(3, 10), octaves: 2, persistence: 0.4 }), rng.float(0, 0.05));
    const cx = w / 2, cy = h / 2 + rng.float(-0.05, 0.05) * h, a = w * rng.float(0.42, 0.62), b = h * rng.float(0.35, 0.55);
    if (rng.bool(0.6)) {
      // a bony shell: bright between two ellipses
      const t = rng.float(0.02, 0.05), bone = rng.float(0.8, 0.95);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const d = ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2;
          if (d < 1 && d > (1 - t) ** 2 * 0.9) p[y * w + x] = bone;
        }
      }
    }
    maskOutsideEllipse(p, w, h, cx, cy, a, b, rng.float(0, 0.05));
    return [p];
  },
  objectColour: (bg, contrast, polarity) => grayShift(bg, contrast, polarity),
  finish(planes, w, h, rng, noise) {
    const p = planes[0]!;
    boxBlur(p, w, h, 1, 1);
    addGaussian(p, rng.float(0.005, 0.05), noise);
    const lo = rng.float(-0.1, 0.25), hi = rng.float(0.75, 1.1);
    for (let i = 0; i < p.length; i++) p[i] = (p[i]! - lo) / (hi - lo);
    return planes;
  },
};
