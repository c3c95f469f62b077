// Text-like strokes: a "word" of 1-5 glyphs, each a few straight and curved pen strokes of one width, as one object
// (printed labels, handwriting, annotations burned into scans).
import { bezier, emptyShape, strokePolyline, type Point } from '../raster.ts';
import type { ShapeFamily } from './family.ts';

export const glyphStrokes: ShapeFamily = {
  name: 'glyph-strokes',
  minRadius: 6,
  draw({ width, height, cx, cy, r, rng }) {
    const s = emptyShape(width, height);
    const glyphs = rng.int(1, 5);
    const h = Math.min(2 * r, (4 * r) / (glyphs * 0.7 + 0.3)) * rng.float(0.6, 1); // glyph height
    const gw = 0.6 * h, gap = 0.12 * h;
    const pen = Math.max(0.7, h * rng.float(0.05, 0.12));
    const total = glyphs * gw + (glyphs - 1) * gap;
    const slant = rng.float(-0.25, 0.25);
    let x0 = cx - total / 2;
    const y0 = cy - h / 2;
    for (let g = 0; g < glyphs; g++, x0 += gw + gap) {
      // a glyph: 1-3 strokes between points of a 3x3 grid in its cell; connected to the next through the baseline
      const node = (): Point => {
        const gy = rng.int(0, 2) / 2, gx = rng.int(0, 2) / 2;
        return [x0 + gx * gw + slant * (1 - gy) * h, y0 + gy * h];
      };
      const strokes = rng.int(1, 3);
      for (let k = 0; k < strokes; k++) {
        const a = node(), b = node();
        if (rng.bool(0.4)) {
          const c1: Point = [a[0] + rng.float(-0.6, 0.6) * gw, a[1] + rng.float(-0.4, 0.4) * h];
          const c2: Point = [b[0] + rng.float(-0.6, 0.6) * gw, b[1] + rng.float(-0.4, 0.4) * h];
          strokePolyline(s, bezier(a, c1, c2, b, 1.5), pen);
        } else strokePolyline(s, [a, b], pen);
      }
      strokePolyline(s, [[x0, y0 + h], [x0 + gw + (g < glyphs - 1 ? gap : 0), y0 + h]], pen); // baseline joins the word
    }
    return s;
  },
};
