// A blob with 1-4 holes (bone with foramina, cheese, lungs with cavities, a leaf with insect bites).
import { emptyShape, fillDisc, fillPolygons, tighten } from '../raster.ts';
import { radialOutline, smoothProfile, type ShapeFamily } from './family.ts';

export const holeyBlob: ShapeFamily = {
  name: 'holey-blob',
  minRadius: 8,
  draw({ width, height, cx, cy, r, rng }) {
    const s = emptyShape(width, height);
    const prof = smoothProfile(rng, rng.float(0.05, 0.3));
    fillPolygons(s, [radialOutline(cx, cy, (t) => r * prof(t))]);
    for (let k = rng.int(1, 4); k > 0; k--) {
      const a = rng.float(0, 2 * Math.PI), d = r * rng.float(0, 0.55);
      fillDisc(s, cx + d * Math.cos(a), cy + d * Math.sin(a), r * rng.float(0.1, 0.3), 0);
    }
    tighten(s);
    return s;
  },
};
