// A thin curve 1-6 px wide, open or closed (sutures, fibres, wires, contour lines, cracks): almost no area in its box.
import { bezier, emptyShape, strokePolyline, type Point } from '../raster.ts';
import type { ShapeFamily } from './family.ts';

export const thinCurve: ShapeFamily = {
  name: 'thin-curve',
  minRadius: 6,
  draw({ width, height, cx, cy, r, rng }) {
    const s = emptyShape(width, height);
    const p = (): Point => [cx + rng.float(-r, r), cy + rng.float(-r, r)];
    const p0 = p(), p3 = p();
    let pts = bezier(p0, p(), p(), p3);
    if (rng.bool(0.3)) pts = pts.concat(bezier(p3, p(), p(), p0).slice(1)); // a closed loop
    strokePolyline(s, pts, rng.float(0.6, Math.min(3, 0.5 + r / 20)));
    return s;
  },
};
