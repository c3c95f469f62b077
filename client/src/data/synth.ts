// Synthetic federated segmentation data, written as layout (a) per site: <out>/site-<k>/{images,masks}/img_NNN.png.
// Objects are shapes whose filled bounding box is a poor answer (rings, crescents, stars, thin curved vessels,
// touching pairs in label-indexed masks), brighter or darker than a textured, noisy background, with a rim.
// With nonIid each site has its own intensity, polarity, contrast, noise, texture, gamma and object mix.
import { readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writePng } from './io.ts';
import { labelStats, filledBox } from './mask.ts';
import { dice } from './metrics.ts';
import { otsuInBox } from './otsuInBox.ts';
import { Rng } from './rng.ts';

export const SHAPES = ['ring', 'crescent', 'star', 'vessel', 'touching'] as const;
export type ShapeKind = (typeof SHAPES)[number];

export interface SynthOptions {
  out: string;
  sites?: number;
  nonIid?: boolean;
  seed?: number;
  imagesPerSite?: number;
  /** Square image side in pixels. */
  size?: number;
  /** Called with one human-readable line per site and a final summary line. */
  log?: (line: string) => void;
}

export interface SiteStyle {
  /** Background mean intensity (0..1). */
  background: number;
  /** Object intensity offset from the background; negative = darker objects. */
  contrast: number;
  /** Extra rim intensity (same sign as contrast). */
  rim: number;
  /** Background texture amplitude (smooth noise). */
  texture: number;
  /** Object internal texture amplitude. */
  objectTexture: number;
  /** Gaussian pixel noise sigma. */
  noise: number;
  gamma: number;
  /** Relative frequency of each shape kind (SHAPES order). */
  mix: number[];
}

export interface SiteSummary {
  name: string;
  dir: string;
  images: number;
  objects: number;
  objectsByKind: Record<string, number>;
  /** Mean Dice of the filled tight box vs the object mask over this site's objects. */
  boxDice: number;
  /** Mean Dice of Otsu's threshold inside the tight box (otsuInBox.ts) over this site's objects. */
  otsuDice: number;
  style: SiteStyle;
}

export interface SynthSummary {
  out: string;
  seed: number;
  nonIid: boolean;
  size: number;
  imagesPerSite: number;
  sites: SiteSummary[];
  /** Mean box-baseline Dice over all objects of all sites. */
  boxDice: number;
  /** Mean Otsu-in-box Dice over all objects of all sites. */
  otsuDice: number;
}

const BASE_STYLE: SiteStyle = {
  background: 0.35, contrast: 0.3, rim: 0.12, texture: 0.12, objectTexture: 0.08, noise: 0.04, gamma: 1, mix: [1, 1, 1, 1, 1],
};

export function siteStyle(rng: Rng, k: number, nonIid: boolean): SiteStyle {
  if (!nonIid) return { ...BASE_STYLE, mix: [...BASE_STYLE.mix] };
  const polarity = k % 3 === 1 ? -1 : 1;
  const mix = SHAPES.map(() => rng.float(0.3, 1));
  mix[k % SHAPES.length]! += 3; // each site is dominated by one kind of object
  return {
    background: polarity > 0 ? rng.float(0.15, 0.45) : rng.float(0.55, 0.75),
    contrast: polarity * rng.float(0.18, 0.4),
    rim: polarity * rng.float(0.03, 0.18),
    texture: rng.float(0.05, 0.2),
    objectTexture: rng.float(0.03, 0.12),
    noise: rng.float(0.015, 0.08),
    gamma: rng.float(0.7, 1.4),
    mix,
  };
}

// ---- shapes: each paints 1s into a size*size mask ----

type Mask = Uint8Array;

function paintDisk(m: Mask, n: number, cx: number, cy: number, r: number, value = 1): void {
  const x0 = Math.max(0, Math.floor(cx - r)), x1 = Math.min(n - 1, Math.ceil(cx + r));
  const y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(n - 1, Math.ceil(cy + r));
  for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) if ((x - cx) ** 2 + (y - cy) ** 2 <= r * r) m[y * n + x] = value;
}

function ring(n: number, cx: number, cy: number, R: number, rng: Rng): Mask {
  const m = new Uint8Array(n * n);
  paintDisk(m, n, cx, cy, R);
  paintDisk(m, n, cx, cy, R * (1 - rng.float(0.18, 0.3)), 0);
  return m;
}

function crescent(n: number, cx: number, cy: number, R: number, rng: Rng): Mask {
  const m = new Uint8Array(n * n);
  paintDisk(m, n, cx, cy, R);
  const a = rng.float(0, 2 * Math.PI), d = R * rng.float(0.3, 0.5);
  paintDisk(m, n, cx + d * Math.cos(a), cy + d * Math.sin(a), R * rng.float(0.85, 1), 0);
  return m;
}

function star(n: number, cx: number, cy: number, R: number, rng: Rng): Mask {
  const m = new Uint8Array(n * n);
  const k = rng.int(5, 7), inner = rng.float(0.3, 0.45), rot = rng.float(0, 2 * Math.PI);
  const poly: [number, number][] = [];
  for (let i = 0; i < 2 * k; i++) {
    const r = i % 2 === 0 ? R : R * inner, a = rot + (i * Math.PI) / k;
    poly.push([cx + r * Math.cos(a), cy + r * Math.sin(a)]);
  }
  const x0 = Math.max(0, Math.floor(cx - R)), x1 = Math.min(n - 1, Math.ceil(cx + R));
  const y0 = Math.max(0, Math.floor(cy - R)), y1 = Math.min(n - 1, Math.ceil(cy + R));
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      let inside = false;
      for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
        const [xi, yi] = poly[i]!, [xj, yj] = poly[j]!;
        if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
      }
      if (inside) m[y * n + x] = 1;
    }
  }
  return m;
}

function vessel(n: number, rng: Rng): Mask {
  const m = new Uint8Array(n * n);
  const margin = n * 0.1;
  const p0: [number, number] = [rng.float(margin, n - margin), rng.float(margin, n - margin)];
  const a = rng.float(0, 2 * Math.PI), len = n * rng.float(0.4, 0.65);
  let p3: [number, number] = [p0[0] + len * Math.cos(a), p0[1] + len * Math.sin(a)];
  p3 = [Math.min(n - margin, Math.max(margin, p3[0])), Math.min(n - margin, Math.max(margin, p3[1]))];
  const dx = p3[0] - p0[0], dy = p3[1] - p0[1], L = Math.hypot(dx, dy) || 1;
  const px = -dy / L, py = dx / L, bend = () => rng.float(-0.45, 0.45) * L;
  const b1 = bend(), b2 = bend();
  const p1 = [p0[0] + dx / 3 + px * b1, p0[1] + dy / 3 + py * b1], p2 = [p0[0] + (2 * dx) / 3 + px * b2, p0[1] + (2 * dy) / 3 + py * b2];
  const w0 = (n / 256) * rng.float(2, 3.2);
  const steps = Math.ceil(L * 2);
  for (let i = 0; i <= steps; i++) {
    const t = i / steps, u = 1 - t;
    const x = u * u * u * p0[0] + 3 * u * u * t * p1[0]! + 3 * u * t * t * p2[0]! + t * t * t * p3[0];
    const y = u * u * u * p0[1] + 3 * u * u * t * p1[1]! + 3 * u * t * t * p2[1]! + t * t * t * p3[1];
    paintDisk(m, n, x, y, w0 * (1 - 0.35 * t)); // tapering
  }
  return m;
}

function blobShape(kind: 'ring' | 'crescent' | 'star', n: number, cx: number, cy: number, R: number, rng: Rng): Mask {
  return kind === 'ring' ? ring(n, cx, cy, R, rng) : kind === 'crescent' ? crescent(n, cx, cy, R, rng) : star(n, cx, cy, R, rng);
}

function overlaps(a: Mask, labels: Uint8Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] && labels[i]) return true;
  return false;
}

function paintLabel(labels: Uint8Array, m: Mask, label: number): void {
  for (let i = 0; i < m.length; i++) if (m[i] && !labels[i]) labels[i] = label;
}

/** Place objects into a label map; returns the labels (1..k) and the kinds per label. */
function placeObjects(n: number, rng: Rng, mix: number[]): { labels: Uint8Array; kinds: ShapeKind[] } {
  const labels = new Uint8Array(n * n);
  const kinds: ShapeKind[] = [];
  const count = rng.int(1, 3);
  const blobs = ['ring', 'crescent', 'star'] as const;
  const radius = (): number => n * rng.float(0.08, 0.16);
  const center = (R: number): [number, number] => [rng.float(R + 2, n - R - 2), rng.float(R + 2, n - R - 2)];
  for (let o = 0; o < count && kinds.length < 4; o++) {
    const kind = SHAPES[rng.weighted(mix)]!;
    for (let attempt = 0; attempt < 25; attempt++) {
      if (kind === 'vessel') {
        const m = vessel(n, rng);
        if (overlaps(m, labels)) continue;
        paintLabel(labels, m, kinds.length + 1);
        kinds.push('vessel');
        break;
      }
      if (kind === 'touching') {
        const R1 = radius(), R2 = radius();
        const [cx, cy] = center(R1 + 2 * R2);
        const a = rng.float(0, 2 * Math.PI), d = R1 + R2 - 1;
        const cx2 = cx + d * Math.cos(a), cy2 = cy + d * Math.sin(a);
        if (cx2 < R2 + 2 || cy2 < R2 + 2 || cx2 > n - R2 - 2 || cy2 > n - R2 - 2) continue;
        const m1 = blobShape(rng.pick(blobs), n, cx, cy, R1, rng);
        const m2 = blobShape(rng.pick(blobs), n, cx2, cy2, R2, rng);
        if (overlaps(m1, labels) || overlaps(m2, labels)) continue;
        paintLabel(labels, m1, kinds.length + 1);
        kinds.push('touching');
        paintLabel(labels, m2, kinds.length + 1);
        kinds.push('touching');
        break;
      }
      const R = radius();
      const [cx, cy] = center(R);
      const m = blobShape(kind, n, cx, cy, R, rng);
      if (overlaps(m, labels)) continue;
      paintLabel(labels, m, kinds.length + 1);
      kinds.push(kind);
      break;
    }
  }
  return { labels, kinds };
}

/** Smooth random field in [-1, 1] (bilinear value noise, 3 octaves). */
function valueNoise(n: number, rng: Rng, cells: number): Float32Array {
  const out = new Float32Array(n * n);
  let amp = 1, total = 0;
  for (let oct = 0, c = cells; oct < 3; oct++, c *= 2, amp /= 2) {
    const g = new Float32Array((c + 1) * (c + 1)).map(() => rng.float(-1, 1));
    const s = c / n;
    for (let y = 0; y < n; y++) {
      const gy = y * s, iy = Math.floor(gy), fy = gy - iy;
      for (let x = 0; x < n; x++) {
        const gx = x * s, ix = Math.floor(gx), fx = gx - ix;
        const a = g[iy * (c + 1) + ix]!, b = g[iy * (c + 1) + ix + 1]!;
        const cc = g[(iy + 1) * (c + 1) + ix]!, d = g[(iy + 1) * (c + 1) + ix + 1]!;
        out[y * n + x]! += amp * ((a * (1 - fx) + b * fx) * (1 - fy) + (cc * (1 - fx) + d * fx) * fy);
      }
    }
    total += amp;
  }
  for (let i = 0; i < out.length; i++) out[i]! /= total;
  return out;
}

function boxBlur3(img: Float32Array, n: number): Float32Array {
  const out = new Float32Array(img.length);
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      let s = 0, c = 0;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= n) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= n) continue;
          s += img[yy * n + xx]!;
          c++;
        }
      }
      out[y * n + x] = s / c;
    }
  }
  return out;
}

function render(n: number, labels: Uint8Array, st: SiteStyle, rng: Rng): Uint8Array {
  const bg = valueNoise(n, rng, 4), fine = valueNoise(n, rng, 32);
  const img = new Float32Array(n * n);
  for (let i = 0; i < img.length; i++) img[i] = st.background + st.texture * bg[i]!;
  // faint unlabeled distractor blobs (half contrast) so "everything bright" is not the answer
  const distract = new Uint8Array(n * n);
  for (let k = rng.int(0, 2); k > 0; k--) paintDisk(distract, n, rng.float(0, n), rng.float(0, n), n * rng.float(0.03, 0.07));
  let nLabels = 0;
  for (let i = 0; i < labels.length; i++) if (labels[i]! > nLabels) nLabels = labels[i]!;
  const objShift = Array.from({ length: nLabels + 1 }, () => st.contrast * rng.float(0.85, 1.15));
  for (let i = 0; i < img.length; i++) {
    if (distract[i] && !labels[i]) img[i]! += 0.45 * st.contrast + 0.5 * st.objectTexture * fine[i]!;
  }
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      const i = y * n + x, l = labels[i]!;
      if (!l) continue;
      img[i]! += objShift[l]! + st.objectTexture * fine[i]!;
      const edge = (x > 0 && labels[i - 1] !== l) || (x < n - 1 && labels[i + 1] !== l) || (y > 0 && labels[i - n] !== l) || (y < n - 1 && labels[i + n] !== l);
      if (edge) img[i]! += st.rim;
    }
  }
  const blurred = boxBlur3(img, n);
  const out = new Uint8Array(n * n);
  for (let i = 0; i < out.length; i++) {
    const v = Math.min(1, Math.max(0, blurred[i]! + rng.normal(0, st.noise)));
    out[i] = Math.round(255 * Math.pow(v, st.gamma));
  }
  return out;
}

/** Generate one synthetic image: 8-bit gray pixels, label map (1..k), object kinds. Pure, deterministic by rng. */
export function synthImage(size: number, style: SiteStyle, rng: Rng): { image: Uint8Array; labels: Uint8Array; kinds: ShapeKind[] } {
  let placed = placeObjects(size, rng, style.mix);
  // drop tiny or fully hidden objects and renumber 1..k
  const stats = labelStats(placed.labels, size, size).filter((s) => s.area >= 30);
  const remap = new Uint8Array(256);
  stats.forEach((s, k) => (remap[s.label] = k + 1));
  const labels = placed.labels.map((l) => remap[l]!);
  const kinds = stats.map((s) => placed.kinds[s.label - 1]!);
  placed = { labels, kinds };
  return { image: render(size, labels, style, rng), labels, kinds };
}

async function cleanPrevious(out: string): Promise<void> {
  try {
    const prev = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8')) as { sites?: { name?: string }[] };
    for (const s of prev.sites ?? []) if (s.name && /^site-\d+$/.test(s.name)) await rm(join(out, s.name), { recursive: true, force: true });
  } catch {
    // no previous synthetic data here
  }
}

export async function synthesize(opts: SynthOptions): Promise<SynthSummary> {
  const sites = opts.sites ?? 3, per = opts.imagesPerSite ?? 24, size = opts.size ?? 256, seed = opts.seed ?? 0;
  const nonIid = opts.nonIid ?? false;
  if (!(sites >= 1 && per >= 1 && size >= 32)) throw new RangeError('synthesize: need sites >= 1, imagesPerSite >= 1, size >= 32');
  await mkdir(opts.out, { recursive: true });
  await cleanPrevious(opts.out);
  const root = new Rng(seed);
  const summaries: SiteSummary[] = [];
  let diceSum = 0, diceN = 0, otsuSum = 0;
  for (let k = 0; k < sites; k++) {
    const name = `site-${k + 1}`, dir = join(opts.out, name);
    const srng = root.fork(`site-${k}`);
    const style = siteStyle(srng.fork('style'), k, nonIid);
    const byKind: Record<string, number> = {};
    let objects = 0, siteDice = 0, siteOtsu = 0;
    const writes: Promise<void>[] = [];
    for (let i = 0; i < per; i++) {
      const { image, labels, kinds } = synthImage(size, style, srng.fork(`img-${i}`));
      const file = `img_${String(i).padStart(3, '0')}.png`;
      writes.push(writePng(join(dir, 'images', file), image, size, size, 1));
      writes.push(writePng(join(dir, 'masks', file), labels, size, size, 1));
      for (const s of labelStats(labels, size, size)) {
        const gt = labels.map((l) => (l === s.label ? 1 : 0));
        siteDice += dice(filledBox(s.box, size, size), gt);
        siteOtsu += dice(otsuInBox(image, size, size, s.box).mask, gt);
        objects++;
        byKind[kinds[s.label - 1]!] = (byKind[kinds[s.label - 1]!] ?? 0) + 1;
      }
    }
    await Promise.all(writes);
    diceSum += siteDice;
    otsuSum += siteOtsu;
    diceN += objects;
    const summary: SiteSummary = { name, dir, images: per, objects, objectsByKind: byKind, boxDice: objects ? siteDice / objects : NaN, otsuDice: objects ? siteOtsu / objects : NaN, style };
    summaries.push(summary);
    opts.log?.(`${name}: ${per} images, ${objects} objects ${JSON.stringify(byKind)}, box-baseline Dice ${summary.boxDice.toFixed(3)}, Otsu-in-box Dice ${summary.otsuDice.toFixed(3)}`);
  }
  const result: SynthSummary = { out: opts.out, seed, nonIid, size, imagesPerSite: per, sites: summaries, boxDice: diceN ? diceSum / diceN : NaN, otsuDice: diceN ? otsuSum / diceN : NaN };
  opts.log?.(`synthetic data in ${opts.out}: ${sites} site(s), ${nonIid ? 'non-IID' : 'IID'}, box-baseline Dice ${result.boxDice.toFixed(3)} (filled tight box vs mask), Otsu-in-box Dice ${result.otsuDice.toFixed(3)} (Otsu threshold inside the box)`);
  await writeFile(join(opts.out, 'summary.json'), JSON.stringify(result, null, 2) + '\n');
  await writeFile(join(opts.out, 'README.txt'), readme(result));
  return result;
}

function readme(r: SynthSummary): string {
  const lines = [
    'FedSAM synthetic segmentation data',
    '',
    `seed ${r.seed}, ${r.nonIid ? 'non-IID' : 'IID'} sites, ${r.size}x${r.size} 8-bit gray images, ${r.imagesPerSite} per site.`,
    'Layout per site: images/img_NNN.png + masks/img_NNN.png (same stem). Masks are label-indexed:',
    '0 = background, 1..k = objects (each label is one training sample with its own box); they look black in viewers.',
    'Objects: rings, crescents, stars, thin curved vessels and touching pairs, brighter or darker than a textured',
    'background, with a rim; faint unlabeled blobs act as distractors.',
    '',
    'Box baseline = mean Dice of predicting the filled tight bounding box of each object (what a model that',
    'ignores the image would do with a box prompt). Fine-tuning should beat it.',
    'Otsu-in-box baseline = mean Dice of Otsu\'s threshold on the gray pixels inside the tight box, the object being',
    'the class rarer on the box outline than inside the box (the classical tool; it never looks at the mask).',
    '',
    ...r.sites.map((s) => `${s.name}: ${s.objects} objects, box-baseline Dice ${s.boxDice.toFixed(3)}, Otsu-in-box Dice ${s.otsuDice.toFixed(3)}, kinds ${JSON.stringify(s.objectsByKind)}`),
    `all sites: box-baseline Dice ${r.boxDice.toFixed(3)}, Otsu-in-box Dice ${r.otsuDice.toFixed(3)}`,
    '',
    'Details (site styles) in summary.json.',
    '',
  ];
  return lines.join('\n');
}
