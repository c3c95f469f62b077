// ANSI colours for a terminal that takes them: NO_COLOR turns them off, FORCE_COLOR on (https://no-color.org).
import type { WriteStream } from 'node:tty';

export function colourEnabled(stream: NodeJS.WriteStream | WriteStream = process.stderr): boolean {
  if (process.env.NO_COLOR) return false;
  if (process.env.FORCE_COLOR !== undefined) return process.env.FORCE_COLOR !== '0';
  return !!stream.isTTY && (typeof stream.hasColors !== 'function' || stream.hasColors());
}

const code = (open: number, close: number) => (on: boolean, s: string) => (on ? `\x1b[${open}m${s}\x1b[${close}m` : s);
export const paint = {
  dim: code(2, 22),
  bold: code(1, 22),
  red: code(31, 39),
  green: code(32, 39),
  yellow: code(33, 39),
  blue: code(34, 39),
  magenta: code(35, 39),
  cyan: code(36, 39),
  gray: code(90, 39),
};

/** The same colour for the same name (sites), from a few that read well on dark and light backgrounds. */
export function paintName(on: boolean, name: string, names?: readonly string[]): string {
  const set = [paint.cyan, paint.magenta, paint.blue, paint.yellow, paint.green];
  const i = names ? names.indexOf(name) : [...name].reduce((a, c) => a + c.charCodeAt(0), 0);
  return set[Math.abs(i) % set.length]!(on, name);
}

/** Visible length (ANSI escapes do not take columns). */
export function visibleLength(s: string): number {
  return s.replace(/\x1b\[[0-9;]*m/g, '').length;
}

/** Cut to `width` visible columns, keeping escapes intact (and resetting at the cut). */
export function truncateVisible(s: string, width: number): string {
  if (visibleLength(s) <= width) return s;
  let out = '';
  let n = 0;
  for (let i = 0; i < s.length && n < width - 1; ) {
    const m = /^\x1b\[[0-9;]*m/.exec(s.slice(i));
    if (m) {
      out += m[0];
      i += m[0].length;
    } else {
      out += s[i++];
      n++;
    }
  }
  return `${out}…\x1b[0m`;
}
