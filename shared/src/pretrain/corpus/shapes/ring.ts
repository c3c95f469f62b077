// A ring (annulus) with an off-centre, irregular hole: vessel cross-sections, cortices, washers, tyres.
import { emptyShape, fillPolygons } from '../raster.ts';
import { radialOutline, rotate, smoothProfile, type ShapeFamily } from './family.ts';

export const ring: ShapeFamily = {
  name: 'ring',
  minRadius: 4,
  draw({ width, height, cx, cy, r, rng }) {
    const s = emptyShape(width, height);
    const outer = smoothProfile(rng, rng.float(0, 0.2)), inner = smoothProfile(rng, rng.float(0, 0.15));
    const k = rng.float(0.4, 0.8), off = r * (1 - k) * rng.float(0, 0.5), a = rng.float(0, 2 * Math.PI);
    const hx = cx + off * Math.cos(a), hy = cy + off * Math.sin(a);
    const rot = rng.float(0, Math.PI);
    fillPolygons(s, [
      rotate(radialOutline(cx, cy, (t) => r * outer(t)), cx, cy, rot),
      rotate(radialOutline(hx, hy, (t) => r * k * Math.min(1, inner(t))), cx, cy, rot),
    ]);
    return s;
  },
};
