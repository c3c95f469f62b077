// Raster primitives the shape families draw with: a binary shape with its bounding box, even-odd polygon fill,
// discs, thick strokes; and a separable box blur for float planes.

/** A binary shape on a width x height grid: 0/1 pixels and the box [x0, y0, x1, y1] (inclusive) that holds them. */
export interface Shape {
  width: number;
  height: number;
  data: Uint8Array;
  box: [number, number, number, number];
}

export type Point = [number, number];

export function emptyShape(width: number, height: number): Shape {
  return { width, height, data: new Uint8Array(width * height), box: [width, height, -1, -1] };
}

function grow(s: Shape, x0: number, y0: number, x1: number, y1: number): void {
  const b = s.box;
  if (x0 < b[0]) b[0] = x0;
  if (y0 < b[1]) b[1] = y0;
  if (x1 > b[2]) b[2] = x1;
  if (y1 > b[3]) b[3] = y1;
}

/** Fill polygons (one or more rings, even-odd rule: a ring inside another is a hole) with `value` (1 paints, 0 erases). */
export function fillPolygons(s: Shape, rings: readonly (readonly Point[])[], value: 0 | 1 = 1): void {
  const { width: w, height: h, data } = s;
  let ymin = Infinity, ymax = -Infinity;
  for (const r of rings) for (const p of r) { if (p[1] < ymin) ymin = p[1]; if (p[1] > ymax) ymax = p[1]; }
  const y0 = Math.max(0, Math.floor(ymin)), y1 = Math.min(h - 1, Math.ceil(ymax));
  const xs: number[] = [];
  let bx0 = w, bx1 = -1, by0 = h, by1 = -1;
  for (let y = y0; y <= y1; y++) {
    const yc = y + 0.5; // sample at pixel centres
    xs.length = 0;
    for (const r of rings) {
      for (let i = 0, j = r.length - 1; i < r.length; j = i++) {
        const [xi, yi] = r[i]!, [xj, yj] = r[j]!;
        if ((yi > yc) !== (yj > yc)) xs.push(xi + ((yc - yi) * (xj - xi)) / (yj - yi));
      }
    }
    if (xs.length < 2) continue;
    xs.sort((a, b) => a - b);
    for (let k = 0; k + 1 < xs.length; k += 2) {
      const a = Math.max(0, Math.ceil(xs[k]! - 0.5)), b = Math.min(w - 1, Math.floor(xs[k + 1]! - 0.5));
      if (b < a) continue;
      data.fill(value, y * w + a, y * w + b + 1);
      if (a < bx0) bx0 = a;
      if (b > bx1) bx1 = b;
      if (y < by0) by0 = y;
      by1 = y;
    }
  }
  if (value === 1 && bx1 >= 0) grow(s, bx0, by0, bx1, by1);
}

/** Fill (or erase) a disc of radius r centred at (cx, cy). */
export function fillDisc(s: Shape, cx: number, cy: number, r: number, value: 0 | 1 = 1): void {
  const { width: w, height: h, data } = s;
  const y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(h - 1, Math.ceil(cy + r));
  let any = false, bx0 = w, bx1 = -1, by0 = h, by1 = -1;
  for (let y = y0; y <= y1; y++) {
    const dy = y + 0.5 - cy, half = r * r - dy * dy;
    if (half < 0) continue;
    const dx = Math.sqrt(half);
    const a = Math.max(0, Math.ceil(cx - dx - 0.5)), b = Math.min(w - 1, Math.floor(cx + dx - 0.5));
    if (b < a) continue;
    data.fill(value, y * w + a, y * w + b + 1);
    any = true;
    if (a < bx0) bx0 = a;
    if (b > bx1) bx1 = b;
    if (y < by0) by0 = y;
    by1 = y;
  }
  if (value === 1 && any) grow(s, bx0, by0, bx1, by1);
}

/** A stroke along a polyline, radius per vertex (tapering allowed); discs at least every half radius, min 0.7 px. */
export function strokePolyline(s: Shape, pts: readonly Point[], radius: number | readonly number[], value: 0 | 1 = 1): void {
  const rad = (i: number) => Math.max(0.7, typeof radius === 'number' ? radius : radius[i]!);
  if (pts.length === 1) fillDisc(s, pts[0]![0], pts[0]![1], rad(0), value);
  for (let i = 0; i + 1 < pts.length; i++) {
    const [ax, ay] = pts[i]!, [bx, by] = pts[i + 1]!;
    const ra = rad(i), rb = rad(i + 1);
    const len = Math.hypot(bx - ax, by - ay);
    const steps = Math.max(1, Math.ceil(len / Math.max(0.5, Math.min(ra, rb) * 0.5)));
    for (let k = i === 0 ? 0 : 1; k <= steps; k++) {
      const t = k / steps;
      fillDisc(s, ax + (bx - ax) * t, ay + (by - ay) * t, ra + (rb - ra) * t, value);
    }
  }
}

/** Points of a cubic Bezier curve, about one per `step` pixels. */
export function bezier(p0: Point, p1: Point, p2: Point, p3: Point, step = 2): Point[] {
  const len = Math.hypot(p1[0] - p0[0], p1[1] - p0[1]) + Math.hypot(p2[0] - p1[0], p2[1] - p1[1]) + Math.hypot(p3[0] - p2[0], p3[1] - p2[1]);
  const n = Math.max(2, Math.ceil(len / step));
  const out: Point[] = [];
  for (let i = 0; i <= n; i++) {
    const t = i / n, u = 1 - t;
    const a = u * u * u, b = 3 * u * u * t, c = 3 * u * t * t, d = t * t * t;
    out.push([a * p0[0] + b * p1[0] + c * p2[0] + d * p3[0], a * p0[1] + b * p1[1] + c * p2[1] + d * p3[1]]);
  }
  return out;
}

/** Recompute the tight box and area of a shape after erasing (box grows only while painting). */
export function tighten(s: Shape): number {
  const { width: w, data } = s;
  const [bx0, by0, bx1, by1] = s.box;
  let x0 = w, y0 = s.height, x1 = -1, y1 = -1, area = 0;
  for (let y = Math.max(0, by0); y <= by1; y++) {
    for (let x = Math.max(0, bx0), i = y * w + x; x <= bx1; x++, i++) {
      if (!data[i]) continue;
      area++;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      y1 = y;
    }
  }
  s.box = [x0, y0, x1, y1];
  return area;
}

/**
 * Box blur of radius r (window 2r+1) along rows then columns, edges clamped; `passes` repeats approach a Gaussian
 * (3 passes of radius r ~ sigma r). In place on a w x h float plane.
 */
export function boxBlur(plane: Float32Array, w: number, h: number, r: number, passes = 1): void {
  if (r < 1) return;
  const line = new Float32Array(Math.max(w, h));
  const win = 2 * r + 1;
  for (let p = 0; p < passes; p++) {
    for (let y = 0; y < h; y++) blurLine(plane, y * w, 1, w, r, win, line);
    for (let x = 0; x < w; x++) blurLine(plane, x, w, h, r, win, line);
  }
}

function blurLine(a: Float32Array, start: number, stride: number, n: number, r: number, win: number, tmp: Float32Array): void {
  for (let i = 0; i < n; i++) tmp[i] = a[start + i * stride]!;
  let acc = 0;
  for (let k = -r; k <= r; k++) acc += tmp[Math.min(n - 1, Math.max(0, k))]!;
  for (let i = 0; i < n; i++) {
    a[start + i * stride] = acc / win;
    acc += tmp[Math.min(n - 1, i + r + 1)]! - tmp[Math.max(0, i - r)]!;
  }
}
