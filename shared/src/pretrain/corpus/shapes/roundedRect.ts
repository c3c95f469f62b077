// A rotated rectangle with rounded corners (man-made objects: devices, tiles, screens, implants).
import { emptyShape, fillPolygons, type Point } from '../raster.ts';
import { rotate, type ShapeFamily } from './family.ts';

export const roundedRect: ShapeFamily = {
  name: 'rounded-rect',
  minRadius: 2,
  draw({ width, height, cx, cy, r, rng }) {
    const s = emptyShape(width, height);
    const a = r, b = r * rng.float(0.2, 1), c = Math.min(a, b) * rng.float(0, 0.9);
    const pts: Point[] = [];
    const corners: Point[] = [[a - c, b - c], [-(a - c), b - c], [-(a - c), -(b - c)], [a - c, -(b - c)]];
    corners.forEach(([x, y], q) => {
      for (let i = 0; i <= 6; i++) {
        const t = (q * Math.PI) / 2 + (i * Math.PI) / 12;
        pts.push([cx + x + c * Math.cos(t), cy + y + c * Math.sin(t)]);
      }
    });
    fillPolygons(s, [rotate(pts, cx, cy, rng.float(0, Math.PI))]);
    return s;
  },
};
