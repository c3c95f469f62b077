// What an appearance regime is: how the empty scene looks, what colour objects take against it, and what the
// sensor does to the picture (blur, noise, speckle, bias, colour mapping). Planes are float, nominally 0..1.
import type { SampleRng } from '../../sample.ts';
import type { PixelNoise } from '../random.ts';

export interface Regime {
  name: string;
  /** 1: gray planes until `finish`; 3: colour. */
  channels: 1 | 3;
  /** The empty scene. */
  background(w: number, h: number, rng: SampleRng): Float32Array[];
  /**
   * Colour of an object over local background colour `bg`: `contrast` (0..1, faint to strong) and `polarity`
   * (+1 brighter, -1 darker) are drawn by the scene; a regime may bend them (fluorescence is always bright).
   */
  objectColour(bg: readonly number[], contrast: number, polarity: 1 | -1, rng: SampleRng): number[];
  /** Probability that an object is brighter than its surroundings. */
  brightShare: number;
  /**
   * The sensor's field of view (1 = imaged), when it does not cover the whole picture (an ultrasound fan). Drawn
   * before the objects: the scene keeps no object pixels outside it, and `finish` receives it.
   */
  fieldOfView?(w: number, h: number, rng: SampleRng): Uint8Array;
  /** The sensor: returns the final planes (1 gray or 3 colour), values clamped to 0..1 later. */
  finish(planes: Float32Array[], w: number, h: number, rng: SampleRng, noise: PixelNoise, fov?: Uint8Array): Float32Array[];
}

/** Gray object colour: bg + polarity * contrast, flipped when that leaves 0..1 (the object must stay visible). */
export function grayShift(bg: readonly number[], contrast: number, polarity: 1 | -1): number[] {
  let v = bg[0]! + polarity * contrast;
  if (v > 1 || v < 0) v = bg[0]! - polarity * contrast;
  return [Math.min(1, Math.max(0, v))];
}

/** Colour object: a luminance step plus a random chroma step, both scaled by contrast. */
export function colourShift(bg: readonly number[], contrast: number, polarity: 1 | -1, rng: SampleRng): number[] {
  const chroma = [rng.normal(), rng.normal(), rng.normal()];
  const norm = Math.hypot(...chroma) || 1;
  const lum = rng.float(0.2, 1), chr = Math.sqrt(1 - lum * lum);
  return bg.map((b, c) => {
    let v = b + contrast * (polarity * lum + (chr * chroma[c]!) / norm);
    if (v > 1 || v < 0) v = b - contrast * (polarity * lum + (chr * chroma[c]!) / norm);
    return Math.min(1, Math.max(0, v));
  });
}

export function addScaled(dst: Float32Array, src: Float32Array, k: number): void {
  for (let i = 0; i < dst.length; i++) dst[i]! += k * src[i]!;
}

export function addGaussian(p: Float32Array, sigma: number, noise: PixelNoise): void {
  for (let i = 0; i < p.length; i++) p[i]! += sigma * noise.normal();
}

/** Outside the ellipse (cx, cy, a, b) the plane takes `value` (air around a body, a round field of view). */
export function maskOutsideEllipse(p: Float32Array, w: number, h: number, cx: number, cy: number, a: number, b: number, value: number): void {
  for (let y = 0; y < h; y++) {
    const dy = (y - cy) / b;
    for (let x = 0; x < w; x++) {
      const dx = (x - cx) / a;
      if (dx * dx + dy * dy > 1) p[y * w + x] = value;
    }
  }
}
