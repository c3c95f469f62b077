// An ellipse, from round to elongated, at any angle (nuclei, cysts, eggs, wheels seen obliquely).
import { emptyShape, fillPolygons } from '../raster.ts';
import { radialOutline, rotate, type ShapeFamily } from './family.ts';

export const ellipse: ShapeFamily = {
  name: 'ellipse',
  minRadius: 1.5,
  draw({ width, height, cx, cy, r, rng }) {
    const s = emptyShape(width, height);
    const b = r * rng.float(0.3, 1);
    const pts = radialOutline(cx, cy, (t) => (r * b) / Math.hypot(b * Math.cos(t), r * Math.sin(t)), 64);
    fillPolygons(s, [rotate(pts, cx, cy, rng.float(0, Math.PI))]);
    return s;
  },
};
