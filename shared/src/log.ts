// Structured logs: one JSON line per event on stderr (stdout stays for tables and results).
// FEDSAM_LOG_LEVEL (or --log-level) sets the level; default 'info'.
import pino, { type Logger } from 'pino';

let root: Logger | undefined;

export function rootLogger(): Logger {
  if (!root) {
    root = pino({ level: process.env.FEDSAM_LOG_LEVEL ?? 'info', base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ fd: 2, sync: true }));
  }
  return root;
}

export function setLogLevel(level: string): void {
  rootLogger().level = level;
}

export function logger(component: string, fields: Record<string, unknown> = {}): Logger {
  return rootLogger().child({ component, ...fields });
}
