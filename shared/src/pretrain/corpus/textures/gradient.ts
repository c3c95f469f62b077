// Smooth illumination: a linear ramp at any angle or a radial falloff (coil sensitivity, vignetting, light from a side).
import type { SampleRng } from '../../sample.ts';

/** A w x h plane in [-1, 1]. */
export function gradient(w: number, h: number, rng: SampleRng): Float32Array {
  const out = new Float32Array(w * h);
  if (rng.bool(0.6)) {
    const a = rng.float(0, 2 * Math.PI), c = Math.cos(a), s = Math.sin(a);
    const half = (Math.abs(c) * w + Math.abs(s) * h) / 2 || 1;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[y * w + x] = ((x - w / 2) * c + (y - h / 2) * s) / half;
  } else {
    const cx = rng.float(0, w), cy = rng.float(0, h), R = Math.hypot(w, h) * rng.float(0.4, 1);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[y * w + x] = 1 - 2 * Math.min(1, Math.sqrt((x - cx) * (x - cx) + (y - cy) * (y - cy)) / R);
  }
  return out;
}
