// Log events as lines people read: `12:01:02 INFO  site-2  r3  update accepted  num_examples=54 train_loss=0.99`.
// The JSON events (pino) stay the source: this only formats them for a terminal.
import { paint, paintName } from './color.ts';

const LEVELS: Record<number, { name: string; colour: (on: boolean, s: string) => string }> = {
  10: { name: 'TRACE', colour: paint.gray },
  20: { name: 'DEBUG', colour: paint.gray },
  30: { name: 'INFO ', colour: paint.green },
  40: { name: 'WARN ', colour: paint.yellow },
  50: { name: 'ERROR', colour: paint.red },
  60: { name: 'FATAL', colour: paint.red },
};

/** Fields shown elsewhere on the line, or of no use to a person reading a terminal. */
const HIDDEN = new Set(['level', 'time', 'msg', 'site', 'round', 'component', 'event', 'pid', 'hostname', 'task_id', 'global_version', 'peer', 'client_version', 'base_model_hash']);

function value(v: unknown): string {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : Math.abs(v) >= 1e-3 && Math.abs(v) < 1e5 ? String(Number(v.toPrecision(4))) : v.toExponential(2);
  if (typeof v === 'string') return /[\s=]/.test(v) ? JSON.stringify(v) : v;
  if (Array.isArray(v)) return v.map(value).join(',');
  return JSON.stringify(v);
}

function fields(o: Record<string, unknown>, prefix = '', out: string[] = []): string[] {
  for (const [k, v] of Object.entries(o)) {
    if (!prefix && HIDDEN.has(k)) continue;
    if (v === undefined || v === null || (typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0)) continue;
    // nested objects flatten (metrics.dice=0.42); the metrics prefix is implied
    if (typeof v === 'object' && !Array.isArray(v)) fields(v as Record<string, unknown>, k === 'metrics' || k === 'report' ? '' : `${prefix}${k}.`, out);
    else out.push(`${prefix}${k}=${value(v)}`);
  }
  return out;
}

export interface HumanLineOptions {
  colour: boolean;
  /** Site names in a fixed order, for stable colours. */
  sites?: readonly string[];
}

/** One human-readable line for one pino event (already parsed). */
export function humanLine(e: Record<string, unknown>, o: HumanLineOptions): string {
  const on = o.colour;
  const t = typeof e.time === 'string' ? new Date(e.time) : typeof e.time === 'number' ? new Date(e.time) : new Date();
  const time = paint.dim(on, t.toTimeString().slice(0, 8));
  const level = LEVELS[e.level as number] ?? LEVELS[30]!;
  const who = typeof e.site === 'string' ? paintName(on, e.site.padEnd(7), o.sites) : paint.dim(on, String(e.component ?? '').padEnd(7));
  const round = typeof e.round === 'number' ? paint.dim(on, `r${e.round}`.padEnd(3)) : '   ';
  const msg = String(e.msg ?? e.event ?? '');
  const err = typeof e.err === 'string' ? e.err : undefined;
  const rest = fields({ ...e, err: undefined });
  const text = level.name.trim() === 'INFO' ? msg : level.colour(on, msg);
  return [time, level.colour(on, level.name), who, round, text + (err ? `: ${level.colour(on, err)}` : ''), rest.length ? paint.dim(on, rest.join(' ')) : '']
    .filter((p, i) => p !== '' || i < 5).join(' ').trimEnd();
}
