// Ultrasound-like (held out from pretraining): a fan-shaped field of view, echogenic tissue with fully developed,
// spatially correlated speckle (Rayleigh amplitude), depth attenuation and log compression; cysts are dark.
import type { Regime } from './regime.ts';
import { addScaled, grayShift } from './regime.ts';
import { fractalNoise } from '../textures/fractalNoise.ts';
import { boxBlur } from '../raster.ts';

export const ultrasound: Regime = {
  name: 'ultrasound',
  channels: 1,
  brightShare: 0.35,
  background(w, h, rng) {
    const p = new Float32Array(w * h).fill(rng.float(0.3, 0.55));
    addScaled(p, fractalNoise(w, h, rng, { cells: rng.int(2, 6), octaves: 3, persistence: 0.5 }), rng.float(0.05, 0.2));
    return [p];
  },
  fieldOfView(w, h, rng) {
    // a sector: apex above the image, half-angle phi, up to depth rMax
    const ax = w / 2 + rng.float(-0.1, 0.1) * w, ay = -h * rng.float(0.05, 0.3), phi = rng.float(0.5, 0.9);
    const rMax = h - ay + rng.float(-0.1, 0.2) * h;
    const fov = new Uint8Array(w * h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const r = Math.sqrt((x - ax) ** 2 + (y - ay) ** 2), a = Math.atan2(x - ax, y - ay);
        fov[y * w + x] = Math.abs(a) > phi || r > rMax ? 0 : 1;
      }
    }
    return fov;
  },
  objectColour: (bg, contrast, polarity) => grayShift(bg, contrast, polarity),
  finish(planes, w, h, rng, noise, fov) {
    const p = planes[0]!;
    // speckle: |complex Gaussian| correlated over a resolution cell wider laterally than axially
    const re = new Float32Array(w * h), im = new Float32Array(w * h);
    for (let i = 0; i < re.length; i++) { re[i] = noise.normal(); im[i] = noise.normal(); }
    const cell = rng.int(1, 2);
    boxBlur(re, w, h, cell, 1);
    boxBlur(im, w, h, cell, 1);
    const norm = Math.sqrt(2 / (2 * cell + 1) ** 2) || 1;
    const atten = rng.float(0, 1.2), comp = rng.float(5, 40);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = y * w + x;
        const sp = Math.sqrt(re[i]! * re[i]! + im[i]! * im[i]!) / norm / 1.25; // Rayleigh, mean about 1
        const depth = (y + 1) / h;
        let v = p[i]! * sp * Math.exp(-atten * depth);
        p[i] = Math.log(1 + comp * Math.max(0, v)) / Math.log(1 + comp);
      }
    }
    if (rng.bool(0.5)) boxBlur(p, w, h, 1, 1); // the scanner's speckle reduction
    if (fov) for (let i = 0; i < p.length; i++) if (!fov[i]) p[i] = 0;
    return planes;
  },
};
