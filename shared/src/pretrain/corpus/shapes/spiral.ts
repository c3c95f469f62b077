// A thick Archimedean spiral of 1-3 turns (shells, coiled tubes, galaxies): one long, self-nesting object. Held out.
import { emptyShape, strokePolyline, type Point } from '../raster.ts';
import type { ShapeFamily } from './family.ts';

export const spiral: ShapeFamily = {
  name: 'spiral',
  minRadius: 10,
  draw({ width, height, cx, cy, r, rng }) {
    const s = emptyShape(width, height);
    const turns = rng.float(1, 3), rot = rng.float(0, 2 * Math.PI), dirn = rng.bool() ? 1 : -1;
    const pen = Math.max(0.8, (r / (turns * 2 + 1)) * rng.float(0.3, 0.7));
    const pts: Point[] = [];
    const steps = Math.ceil(turns * 48);
    for (let i = 0; i <= steps; i++) {
      const t = i / steps, a = rot + dirn * t * turns * 2 * Math.PI, rr = r * (0.1 + 0.9 * t);
      pts.push([cx + rr * Math.cos(a), cy + rr * Math.sin(a)]);
    }
    strokePolyline(s, pts, pen);
    return s;
  },
};
