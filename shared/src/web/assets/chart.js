// Line charts in plain SVG for the dashboards (no library: a few axes, grid lines and polylines).
const NS = 'http://www.w3.org/2000/svg';

function el(name, attrs = {}, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Round numbers for an axis from lo to hi, about `count` of them. */
export function ticks(lo, hi, count = 5) {
  const span = hi - lo || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toFixed(10)));
  return out;
}

/**
 * Draw series into an <svg> (its viewBox gives the size). series: [{name, color, points: [[x, y]], width?, dash?,
 * dots?}]; options: {xMin, xMax, yMin, yMax, xLabel, yLabel, integerX}.
 */
export function lineChart(svg, series, o = {}) {
  const [, , W, H] = (svg.getAttribute('viewBox') ?? '0 0 640 280').split(/\s+/).map(Number);
  const m = { left: 46, right: 12, top: 22, bottom: 34 };
  const all = series.flatMap((s) => s.points);
  const xMin = o.xMin ?? Math.min(0, ...all.map((p) => p[0]));
  const xMax = Math.max(o.xMax ?? 1, ...all.map((p) => p[0]), xMin + 1);
  const yMin = o.yMin ?? 0;
  const yMax = o.yMax ?? Math.max(1e-9, ...all.map((p) => p[1])) * 1.1;
  const x = (v) => m.left + ((v - xMin) / (xMax - xMin)) * (W - m.left - m.right);
  const y = (v) => H - m.bottom - ((v - yMin) / (yMax - yMin)) * (H - m.top - m.bottom);
  svg.replaceChildren();
  const grid = el('g', { class: 'grid' });
  for (const t of ticks(yMin, yMax, 5)) {
    grid.append(el('line', { x1: m.left, x2: W - m.right, y1: y(t), y2: y(t) }));
    grid.append(el('text', { x: m.left - 6, y: y(t) + 4, 'text-anchor': 'end' }, t.toFixed(t < 1 ? 2 : 0)));
  }
  const xt = ticks(xMin, xMax, Math.min(10, xMax - xMin)).filter((t) => !o.integerX || Number.isInteger(t));
  for (const t of xt) grid.append(el('text', { x: x(t), y: H - m.bottom + 16, 'text-anchor': 'middle' }, String(t)));
  grid.append(el('line', { class: 'axis', x1: m.left, x2: W - m.right, y1: y(yMin), y2: y(yMin) }));
  if (o.xLabel) grid.append(el('text', { class: 'label', x: (m.left + W - m.right) / 2, y: H - 4, 'text-anchor': 'middle' }, o.xLabel));
  if (o.yLabel) grid.append(el('text', { class: 'label', x: 4, y: 12, 'text-anchor': 'start' }, o.yLabel));
  svg.append(grid);
  for (const s of series) {
    if (!s.points.length) continue;
    const g = el('g', { class: 'series', 'data-series': s.name });
    const d = s.points.map(([px, py], i) => `${i ? 'L' : 'M'}${x(px).toFixed(1)},${y(py).toFixed(1)}`).join(' ');
    g.append(el('path', { d, fill: 'none', stroke: s.color, 'stroke-width': s.width ?? 2, 'stroke-dasharray': s.dash ?? 'none' }));
    if (s.dots !== false) {
      for (const [px, py] of s.points) {
        const c = el('circle', { cx: x(px), cy: y(py), r: (s.width ?? 2) + 1.5, fill: s.color });
        c.append(el('title', {}, `${s.name}: ${py.toFixed(3)} (round ${px})`));
        g.append(c);
      }
    }
    svg.append(g);
  }
}

/** Bars for one value per x (e.g. seconds or bytes per round). */
export function barChart(svg, points, o = {}) {
  const [, , W, H] = (svg.getAttribute('viewBox') ?? '0 0 320 160').split(/\s+/).map(Number);
  const m = { left: 46, right: 8, top: 8, bottom: 30 };
  const yMax = Math.max(1e-12, ...points.map((p) => p[1])) * 1.15;
  const n = Math.max(1, points.length);
  const bw = (W - m.left - m.right) / n;
  const y = (v) => H - m.bottom - (v / yMax) * (H - m.top - m.bottom);
  svg.replaceChildren();
  const grid = el('g', { class: 'grid' });
  for (const t of ticks(0, yMax, 4)) {
    grid.append(el('line', { x1: m.left, x2: W - m.right, y1: y(t), y2: y(t) }));
    grid.append(el('text', { x: m.left - 6, y: y(t) + 4, 'text-anchor': 'end' }, (o.format ?? String)(t)));
  }
  if (o.xLabel) grid.append(el('text', { class: 'label', x: (m.left + W - m.right) / 2, y: H - 4, 'text-anchor': 'middle' }, o.xLabel));
  svg.append(grid);
  points.forEach(([px, py], i) => {
    const r = el('rect', { x: m.left + i * bw + bw * 0.15, y: y(py), width: bw * 0.7, height: Math.max(0, y(0) - y(py)), fill: o.color ?? '#4e79a7' });
    r.append(el('title', {}, `round ${px}: ${(o.format ?? String)(py)}`));
    svg.append(r);
    if (n <= 20) svg.append(el('text', { class: 'tick', x: m.left + (i + 0.5) * bw, y: H - m.bottom + 14, 'text-anchor': 'middle' }, String(px)));
  });
}

/** Distinct colours for sites (Tableau 10), the same site always the same colour. */
export const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
export const colourOf = (names, name) => PALETTE[names.indexOf(name) % PALETTE.length];

/** The key of a chart: a short line in each series' colour (dashed where the series is) and its name. */
export function legend(container, series) {
  container.replaceChildren(...series.map((x) => {
    const span = document.createElement('span');
    const i = document.createElement('i');
    i.style.borderColor = x.color;
    if (x.dash) i.className = 'dash';
    span.append(i, x.name);
    return span;
  }));
}
