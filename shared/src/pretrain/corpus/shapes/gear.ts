// A gear: a disc with 6-16 square teeth and often an axle hole (machined parts, pollen, viruses). Held out.
import { emptyShape, fillDisc, fillPolygons, tighten, type Point } from '../raster.ts';
import type { ShapeFamily } from './family.ts';

export const gear: ShapeFamily = {
  name: 'gear',
  minRadius: 8,
  draw({ width, height, cx, cy, r, rng }) {
    const s = emptyShape(width, height);
    const teeth = rng.int(6, 16), inner = r * rng.float(0.7, 0.85), rot = rng.float(0, 2 * Math.PI);
    const pts: Point[] = [];
    for (let i = 0; i < teeth * 4; i++) {
      const rr = i % 4 < 2 ? r : inner, a = rot + (i * Math.PI) / (teeth * 2);
      pts.push([cx + rr * Math.cos(a), cy + rr * Math.sin(a)]);
    }
    fillPolygons(s, [pts]);
    if (rng.bool(0.7)) fillDisc(s, cx, cy, inner * rng.float(0.2, 0.5), 0);
    tighten(s);
    return s;
  },
};
