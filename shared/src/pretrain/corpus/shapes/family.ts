// What a shape family is: a named drawer of one binary object around a centre, at a characteristic radius.
import type { SampleRng } from '../../sample.ts';
import type { Point, Shape } from '../raster.ts';

export interface ShapeRequest {
  width: number;
  height: number;
  /** Centre of the object. */
  cx: number;
  cy: number;
  /** Characteristic radius in pixels (half the object's extent, roughly). */
  r: number;
  rng: SampleRng;
}

export interface ShapeFamily {
  name: string;
  /** Smallest radius the family makes sense at (e.g. a glyph word needs room for its strokes). */
  minRadius: number;
  draw(q: ShapeRequest): Shape;
}

/** Rotate points by angle a about (cx, cy). */
export function rotate(pts: Point[], cx: number, cy: number, a: number): Point[] {
  const c = Math.cos(a), s = Math.sin(a);
  return pts.map(([x, y]) => [cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c]);
}

/** Closed outline of a radial function r(theta) around (cx, cy). */
export function radialOutline(cx: number, cy: number, radius: (theta: number) => number, vertices = 72): Point[] {
  const pts: Point[] = [];
  for (let i = 0; i < vertices; i++) {
    const t = (2 * Math.PI * i) / vertices, r = radius(t);
    pts.push([cx + r * Math.cos(t), cy + r * Math.sin(t)]);
  }
  return pts;
}

/** A smooth random radial profile: 1 + sum of a few low harmonics with decaying amplitude (`rough` scales them). */
export function smoothProfile(rng: SampleRng, rough: number): (theta: number) => number {
  const terms = Array.from({ length: 5 }, (_, k) => ({ k: k + 2, a: rng.float(0, rough) / (k + 1), p: rng.float(0, 2 * Math.PI) }));
  return (t) => 1 + terms.reduce((s, h) => s + h.a * Math.cos(h.k * t + h.p), 0);
}
