// A smooth irregular blob (organ, lesion, cell, pebble): a radial outline from a few random harmonics, stretched.
import { emptyShape, fillPolygons } from '../raster.ts';
import { radialOutline, rotate, smoothProfile, type ShapeFamily } from './family.ts';

export const blob: ShapeFamily = {
  name: 'blob',
  minRadius: 2,
  draw({ width, height, cx, cy, r, rng }) {
    const s = emptyShape(width, height);
    const prof = smoothProfile(rng, rng.float(0.1, 0.45));
    const stretch = rng.float(0.55, 1);
    const pts = radialOutline(cx, cy, (t) => r * prof(t)).map(([x, y]): [number, number] => [x, cy + (y - cy) * stretch]);
    fillPolygons(s, [rotate(pts, cx, cy, rng.float(0, Math.PI))]);
    return s;
  },
};
