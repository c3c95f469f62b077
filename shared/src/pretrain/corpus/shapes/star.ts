// A star with 4-9 spikes (spiculated lesions, stars, splashes): concave, most of its box is background.
import { emptyShape, fillPolygons, type Point } from '../raster.ts';
import type { ShapeFamily } from './family.ts';

export const star: ShapeFamily = {
  name: 'star',
  minRadius: 4,
  draw({ width, height, cx, cy, r, rng }) {
    const s = emptyShape(width, height);
    const k = rng.int(4, 9), inner = rng.float(0.25, 0.6), rot = rng.float(0, 2 * Math.PI);
    const pts: Point[] = [];
    for (let i = 0; i < 2 * k; i++) {
      const rr = (i % 2 === 0 ? r * rng.float(0.8, 1) : r * inner), a = rot + (i * Math.PI) / k;
      pts.push([cx + rr * Math.cos(a), cy + rr * Math.sin(a)]);
    }
    fillPolygons(s, [pts]);
    return s;
  },
};
