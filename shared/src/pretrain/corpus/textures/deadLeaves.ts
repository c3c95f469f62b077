// Natural-image-like clutter: the dead-leaves model (opaque discs and polygons of random size, power-law
// distributed, falling on each other). Its statistics (edges at all scales, occlusions) are those of photographs.
import type { SampleRng } from '../../sample.ts';
import { emptyShape, fillDisc, fillPolygons, type Point } from '../raster.ts';
import { logUniform } from '../random.ts';

/** `channels` planes (1 gray or 3 colour) with values in [0, 1]; `leaves` drawn back to front. */
export function deadLeaves(w: number, h: number, rng: SampleRng, channels: 1 | 3, palette?: () => number[]): Float32Array[] {
  const planes = Array.from({ length: channels }, () => new Float32Array(w * h));
  const base = palette ? palette() : Array.from({ length: channels }, () => rng.next());
  planes.forEach((p, c) => p.fill(base[c]!));
  const leaves = rng.int(20, 70), side = Math.max(w, h);
  const s = emptyShape(w, h);
  for (let k = 0; k < leaves; k++) {
    const r = logUniform(rng, side / 60, side / 5), cx = rng.float(-r, w + r), cy = rng.float(-r, h + r);
    if (rng.bool(0.6)) fillDisc(s, cx, cy, r);
    else {
      const n = rng.int(3, 6), a0 = rng.float(0, 2 * Math.PI);
      const pts: Point[] = Array.from({ length: n }, (_, i) => {
        const a = a0 + (2 * Math.PI * i) / n + rng.float(-0.3, 0.3);
        return [cx + r * Math.cos(a), cy + r * Math.sin(a)];
      });
      fillPolygons(s, [pts]);
    }
    const col = palette ? palette() : Array.from({ length: channels }, () => rng.next());
    const [x0, y0, x1, y1] = s.box;
    for (let y = y0; y <= y1; y++) {
      for (let x = x0, i = y * w + x0; x <= x1; x++, i++) if (s.data[i]) for (let c = 0; c < channels; c++) planes[c]![i] = col[c]!;
      s.data.fill(0, y * w + x0, y * w + x1 + 1); // clear only what this leaf touched
    }
    s.box = [w, h, -1, -1];
  }
  return planes;
}
