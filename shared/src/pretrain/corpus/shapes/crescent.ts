// A crescent: a disc minus an offset disc (menisci, moons, partial-volume rims). Held out from pretraining.
import { emptyShape, fillDisc, tighten } from '../raster.ts';
import type { ShapeFamily } from './family.ts';

export const crescent: ShapeFamily = {
  name: 'crescent',
  minRadius: 5,
  draw({ width, height, cx, cy, r, rng }) {
    const s = emptyShape(width, height);
    fillDisc(s, cx, cy, r);
    const a = rng.float(0, 2 * Math.PI), d = r * rng.float(0.25, 0.6);
    fillDisc(s, cx + d * Math.cos(a), cy + d * Math.sin(a), r * rng.float(0.8, 1.05), 0);
    tighten(s);
    return s;
  },
};
