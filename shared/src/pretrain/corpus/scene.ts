// One corpus image: a regime's empty scene (plus, often, an extra texture), then objects and unlabeled decoys
// painted back to front (free, touching the previous object, or nested inside it), then the regime's sensor.
// An object's mask is what stays visible of it, so occlusion, touching and nesting give exact masks.
import type { SampleRng } from '../sample.ts';
import type { ShapeFamily } from './shapes/family.ts';
import type { Regime } from './regimes/regime.ts';
import type { Shape } from './raster.ts';
import { PixelNoise, logUniform, pick, weighted } from './random.ts';
import { randomFractalNoise } from './textures/fractalNoise.ts';
import { stripes } from './textures/stripes.ts';
import { gradient } from './textures/gradient.ts';
import { deadLeaves } from './textures/deadLeaves.ts';
import { addScaled } from './regimes/regime.ts';

export interface SceneRequest {
  width: number;
  height: number;
  families: readonly ShapeFamily[];
  regime: Regime;
  /** An easy scene for the start of a curriculum: 1-3 free-standing objects of 8-35% of the side, well contrasted, at most one decoy. */
  easy?: boolean;
}

export interface Scene {
  /** RGB, height x width x 3. */
  image: Uint8Array;
  /** One 0/1 mask per visible object, in paint order. */
  masks: Uint8Array[];
  /** Family of each mask. */
  families: string[];
  decoys: number;
}

/** Objects smaller than this (pixels visible) are dropped: too few to be a prompt target. */
export const MIN_OBJECT_PIXELS = 6;

const OBJECT_COUNT_WEIGHTS = [0, 3, 3, 3, 2, 2, 1, 1, 1]; // 1..8 objects

interface Placed { cx: number; cy: number; r: number }

export function composeScene(q: SceneRequest, rng: SampleRng): Scene {
  const { width: w, height: h, regime } = q;
  const n = w * h, side = Math.min(w, h);
  const bgRng = rng.fork('background'), objRng = rng.fork('objects'), sensorRng = rng.fork('sensor');
  const fov = regime.fieldOfView?.(w, h, bgRng);
  let planes = regime.background(w, h, bgRng);
  // an extra texture of any kind over any regime, so no regime has one fixed look
  const extra = bgRng.next();
  if (extra < 0.5) {
    const tex = extra < 0.2 ? randomFractalNoise(w, h, bgRng) : extra < 0.3 ? stripes(w, h, bgRng) : extra < 0.4 ? gradient(w, h, bgRng)
      : deadLeaves(w, h, bgRng, 1)[0]!.map((v) => 2 * v - 1); // gray clutter
    const amp = logUniform(bgRng, 0.01, 0.15);
    for (const p of planes) addScaled(p, tex, amp);
  }
  const objTex = randomFractalNoise(w, h, objRng);
  const owner = new Int16Array(n).fill(-1);
  const objects = weighted(objRng, q.easy ? [0, 3, 2, 1] : OBJECT_COUNT_WEIGHTS);
  const decoys = weighted(objRng, q.easy ? [3, 1] : [4, 3, 2, 1]);
  const order: boolean[] = Array.from({ length: objects + decoys }, (_, i) => i >= objects); // true = decoy
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(objRng.next() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const families: string[] = [];
  let prev: Placed | null = null;
  let k = 0;
  for (const decoy of order) {
    const fam = pick(objRng, q.families);
    const arrangement = prev && !q.easy ? objRng.next() : 0;
    let p: Placed;
    if (prev && arrangement > 0.85 && prev.r > 8) {
      // nested inside the previous object
      const r = prev.r * objRng.float(0.15, 0.5);
      p = { cx: prev.cx + objRng.float(-0.3, 0.3) * prev.r, cy: prev.cy + objRng.float(-0.3, 0.3) * prev.r, r };
    } else if (prev && arrangement > 0.7) {
      // touching the previous object
      const r = prev.r * objRng.float(0.4, 1.3), a = objRng.float(0, 2 * Math.PI), d = (prev.r + r) * objRng.float(0.75, 0.95);
      p = { cx: prev.cx + d * Math.cos(a), cy: prev.cy + d * Math.sin(a), r };
    } else {
      // from a few pixels to most of the image: log-uniform, a quarter of them tiny (radius 1.5-6 px)
      const r = q.easy ? logUniform(objRng, 0.08 * side, 0.35 * side) : objRng.bool(0.25) ? logUniform(objRng, 1.5, 6) : logUniform(objRng, 6, 0.5 * side);
      p = { cx: objRng.float(0.2 * r, w - 0.2 * r), cy: objRng.float(0.2 * r, h - 0.2 * r), r };
    }
    p.r = Math.max(p.r, fam.minRadius);
    const shape = fam.draw({ width: w, height: h, cx: p.cx, cy: p.cy, r: p.r, rng: objRng });
    if (shape.box[2] < shape.box[0]) continue; // fell outside the image
    paintObject(planes, shape, owner, decoy ? -2 : k, regime, objTex, objRng, q.easy);
    if (!decoy) {
      families.push(fam.name);
      k++;
    }
    prev = p;
  }
  // visible pixels per object
  const masks = families.map(() => new Uint8Array(n));
  const areas = new Int32Array(families.length);
  for (let i = 0; i < n; i++) {
    const o = owner[i]!;
    if (o >= 0 && (!fov || fov[i])) {
      masks[o]![i] = 1;
      areas[o]!++;
    }
  }
  const keep = families.map((_, i) => areas[i]! >= MIN_OBJECT_PIXELS);
  planes = regime.finish(planes, w, h, sensorRng, new PixelNoise(sensorRng), fov);
  return { image: toRGB8(planes, w, h), masks: masks.filter((_, i) => keep[i]), families: families.filter((_, i) => keep[i]), decoys };
}

/** Paint one object opaquely: its colour against the local background, internal texture, shading, sometimes a rim. */
function paintObject(planes: Float32Array[], s: Shape, owner: Int16Array, id: number, regime: Regime, tex: Float32Array, rng: SampleRng, easy = false): void {
  const { width: w, data } = s;
  const [x0, y0, x1, y1] = s.box;
  // local background: the mean under the object (sampled)
  const bg = planes.map(() => 0);
  let cnt = 0;
  const stride = Math.max(1, Math.floor(Math.sqrt(((x1 - x0 + 1) * (y1 - y0 + 1)) / 256)));
  for (let y = y0; y <= y1; y += stride) {
    for (let x = x0; x <= x1; x += stride) {
      const i = y * w + x;
      if (!data[i]) continue;
      planes.forEach((p, c) => (bg[c]! += p[i]!));
      cnt++;
    }
  }
  if (!cnt) return;
  for (let c = 0; c < bg.length; c++) bg[c]! /= cnt;
  // strong to faint: a fifth near the noise floor
  const contrast = easy ? logUniform(rng, 0.25, 0.7) : rng.bool(0.2) ? logUniform(rng, 0.03, 0.1) : logUniform(rng, 0.1, 0.7);
  const polarity: 1 | -1 = rng.bool(regime.brightShare) ? 1 : -1;
  const colour = regime.objectColour(bg, contrast, polarity, rng);
  const texAmp = rng.bool(0.5) ? contrast * rng.float(0, 0.8) : 0;
  const shadeAmp = rng.bool(0.3) ? contrast * rng.float(0, 0.6) : 0;
  const sa = rng.float(0, 2 * Math.PI), sx = Math.cos(sa) / Math.max(1, x1 - x0), sy = Math.sin(sa) / Math.max(1, y1 - y0);
  const rim = rng.bool(0.25) ? polarity * contrast * rng.float(0.3, 1) : 0;
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2, hgt = s.height;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0, i = y * w + x0; x <= x1; x++, i++) {
      if (!data[i]) continue;
      let d = texAmp * tex[i]! + shadeAmp * ((x - cx) * sx + (y - cy) * sy);
      if (rim && (x === 0 || !data[i - 1] || x === w - 1 || !data[i + 1] || y === 0 || !data[i - w] || y === hgt - 1 || !data[i + w])) d += rim;
      for (let c = 0; c < planes.length; c++) planes[c]![i] = colour[c]! + d;
      owner[i] = id;
    }
  }
}

function toRGB8(planes: Float32Array[], w: number, h: number): Uint8Array {
  const n = w * h, out = new Uint8Array(3 * n);
  const q = (v: number) => (v <= 0 ? 0 : v >= 1 ? 255 : Math.round(v * 255));
  if (planes.length === 1) {
    const g = planes[0]!;
    for (let i = 0; i < n; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = q(g[i]!);
  } else {
    const [r, g, b] = planes as [Float32Array, Float32Array, Float32Array];
    for (let i = 0; i < n; i++) {
      out[3 * i] = q(r[i]!);
      out[3 * i + 1] = q(g[i]!);
      out[3 * i + 2] = q(b[i]!);
    }
  }
  return out;
}
