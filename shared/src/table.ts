// Plain-text tables for the terminal (benchmarks, parity, per-epoch and per-round metrics).
export type Cell = string | number | undefined;

export function fmt(v: Cell, digits = 4): string {
  if (v === undefined) return '-';
  if (typeof v === 'string') return v;
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return v.toFixed(digits);
}

export function renderTable(headers: string[], rows: Cell[][], opts: { digits?: number } = {}): string {
  const cells = rows.map((r) => r.map((c) => fmt(c, opts.digits)));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}
