// A branching tree of tapering tubes (vessels, airways, neurons, rivers, roots): one connected object.
import { emptyShape, strokePolyline, type Point, type Shape } from '../raster.ts';
import type { SampleRng } from '../../sample.ts';
import type { ShapeFamily } from './family.ts';

function grow(s: Shape, rng: SampleRng, x: number, y: number, dir: number, len: number, w: number, depth: number): void {
  const pts: Point[] = [[x, y]];
  const widths = [w];
  const steps = Math.max(3, Math.round(len / 4));
  for (let i = 1; i <= steps; i++) {
    dir += rng.normal(0, 0.18);
    x += (len / steps) * Math.cos(dir);
    y += (len / steps) * Math.sin(dir);
    pts.push([x, y]);
    widths.push(w * (1 - (0.35 * i) / steps));
  }
  strokePolyline(s, pts, widths);
  if (depth <= 0) return;
  const branches = rng.int(1, 2);
  for (let b = 0; b < branches; b++) {
    const at = rng.int(Math.floor(steps / 2), steps);
    const [bx, by] = pts[at]!;
    const side = rng.bool() ? 1 : -1;
    grow(s, rng, bx, by, dir + side * rng.float(0.3, 0.9), len * rng.float(0.5, 0.8), widths[at]! * rng.float(0.6, 0.9), depth - 1);
  }
}

export const vesselTree: ShapeFamily = {
  name: 'vessel-tree',
  minRadius: 10,
  draw({ width, height, cx, cy, r, rng }) {
    const s = emptyShape(width, height);
    const dir = rng.float(0, 2 * Math.PI);
    // start behind the centre so the tree spreads over the requested extent
    const x = cx - 0.8 * r * Math.cos(dir), y = cy - 0.8 * r * Math.sin(dir);
    grow(s, rng, x, y, dir, r * rng.float(0.7, 1.1), Math.max(0.8, r * rng.float(0.03, 0.09)), rng.int(1, 3));
    return s;
  },
};
