// A lobulated cloud: the union of 3-8 overlapping discs (cell clusters, cauliflower, cumulus, lymph node). Held out.
import { emptyShape, fillDisc } from '../raster.ts';
import type { ShapeFamily } from './family.ts';

export const lobulated: ShapeFamily = {
  name: 'lobulated',
  minRadius: 6,
  draw({ width, height, cx, cy, r, rng }) {
    const s = emptyShape(width, height);
    const lobes = rng.int(3, 8);
    const core = r * rng.float(0.4, 0.6);
    fillDisc(s, cx, cy, core);
    for (let k = 0; k < lobes; k++) {
      // each lobe overlaps the core, so the cloud is one connected object
      const a = rng.float(0, 2 * Math.PI), lr = r * rng.float(0.25, 0.5), d = Math.min(r - lr, core + 0.7 * lr);
      fillDisc(s, cx + d * Math.cos(a), cy + d * Math.sin(a), lr);
    }
    return s;
  },
};
