// A polygon with 3-10 straight sides, convex or not (crystals, buildings, fragments): sharp corners, straight edges.
import { emptyShape, fillPolygons, type Point } from '../raster.ts';
import type { ShapeFamily } from './family.ts';

export const polygon: ShapeFamily = {
  name: 'polygon',
  minRadius: 3,
  draw({ width, height, cx, cy, r, rng }) {
    const s = emptyShape(width, height);
    const n = rng.int(3, 10), convex = rng.bool(0.5);
    const angles = Array.from({ length: n }, () => rng.float(0, 2 * Math.PI)).sort((a, b) => a - b);
    const pts: Point[] = angles.map((a) => {
      const rr = r * (convex ? 1 : rng.float(0.45, 1));
      return [cx + rr * Math.cos(a), cy + rr * Math.sin(a)];
    });
    fillPolygons(s, [pts]);
    return s;
  },
};
