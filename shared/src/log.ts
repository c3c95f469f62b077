// Structured logs on stderr (stdout stays for tables and results): one JSON line per event (pino) when stderr is
// not a terminal or with --log-format json (what daemons in containers use), a human-readable line per event on a
// terminal (console/humanLog.ts). FEDSAM_LOG_LEVEL (or --log-level) sets the level; default 'info'.
import pino, { type Logger } from 'pino';
import { humanLine } from './console/humanLog.ts';
import { colourEnabled, truncateVisible } from './console/color.ts';

export const LOG_FORMATS = ['auto', 'pretty', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

let root: Logger | undefined;
let json: pino.DestinationStream | undefined;
let pretty = prettyFor((process.env.FEDSAM_LOG_FORMAT as LogFormat | undefined) ?? 'auto');
let sink: ((line: string) => void) | undefined;
let quiet = new Set<string>();
let siteOrder: readonly string[] | undefined;

function prettyFor(f: LogFormat): boolean {
  return f === 'pretty' || (f === 'auto' && !!process.stderr.isTTY);
}

function writeHuman(line: string): void {
  let e: Record<string, unknown>;
  try {
    e = JSON.parse(line);
  } catch {
    process.stderr.write(line);
    return;
  }
  // events that a live view on the terminal shows already (simulate's table and progress) do not scroll past too
  if (typeof e.event === 'string' && quiet.has(e.event) && (e.level as number) <= 30 && (root?.levelVal ?? 30) >= 30) return;
  let text = humanLine(e, { colour: colourEnabled(process.stderr), sites: siteOrder });
  // on a terminal an info line is one line (its details are in --log-format json); warnings and errors wrap whole
  if (process.stderr.isTTY && (e.level as number) <= 30) text = truncateVisible(text, Math.max(40, (process.stderr.columns || 120) - 1));
  if (sink) sink(text);
  else process.stderr.write(`${text}\n`);
}

export function rootLogger(): Logger {
  if (!root) {
    const stream = {
      write(line: string) {
        if (pretty) writeHuman(line);
        else (json ??= pino.destination({ fd: 2, sync: true })).write(line);
      },
    };
    root = pino({ level: process.env.FEDSAM_LOG_LEVEL ?? 'info', base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, stream);
  }
  return root;
}

export function setLogLevel(level: string): void {
  rootLogger().level = level;
}

/** json: one JSON object per line; pretty: human-readable lines; auto: pretty on a terminal, else json. */
export function setLogFormat(format: LogFormat): void {
  pretty = prettyFor(format);
}

export function isPrettyLog(): boolean {
  return pretty;
}

/**
 * Where human-readable lines go instead of stderr (a live view prints them above itself), which events to leave
 * out at level info (the live view shows them) and the site order for colours. Undefined restores the default.
 */
export function setConsole(o: { sink?: (line: string) => void; quietEvents?: Iterable<string>; sites?: readonly string[] } = {}): void {
  sink = o.sink;
  quiet = new Set(o.quietEvents ?? []);
  siteOrder = o.sites;
}

export function logger(component: string, fields: Record<string, unknown> = {}): Logger {
  return rootLogger().child({ component, ...fields });
}
