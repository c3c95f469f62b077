// Shared setup for the federated tests: tokens, in-memory log capture, child processes, tolerance checks.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';
import { hashToken } from '@fedsam/server/auth';

export const HELPERS_DIR = fileURLToPath(new URL('.', import.meta.url));
export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

export const FEDSAM = join(REPO_ROOT, 'bin', 'fedsam.mjs');

/** The fedsam program as a user runs it (bin/fedsam.mjs in a child process); log level warn unless env says otherwise. */
export function runFedsam(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [FEDSAM, ...args], { env: { ...process.env, FEDSAM_LOG_LEVEL: 'warn', ...env }, maxBuffer: 1 << 24 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

export function tokenFor(site: string): string {
  return `token-of-${site}-0123456789abcdef`;
}

export function sitesConfig(names: string[]): Array<{ name: string; token_sha256: string }> {
  return names.map((name) => ({ name, token_sha256: hashToken(tokenFor(name)) }));
}

export async function tempDir(prefix = 'fedsam-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export interface CapturedLogs {
  logger: Logger;
  lines: Array<Record<string, unknown>>;
  find(event: string, pred?: (l: Record<string, unknown>) => boolean): Record<string, unknown> | undefined;
}

export function captureLogs(level = 'info'): CapturedLogs {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return {
    logger,
    lines,
    find: (event, pred) => lines.find((l) => l.event === event && (!pred || pred(l))),
  };
}

export function quietLogger(): Logger {
  return pino({ level: process.env.FEDSAM_TEST_LOG ?? 'silent' });
}

/** Element-wise equality up to one float32 rounding step. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  if (actual.length !== expected.length) throw new Error(`${what}: length ${actual.length} vs ${expected.length}`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const tol = Math.max(1e-12, Math.abs(e) * 2 ** -23);
    if (!(Math.abs(a - e) <= tol)) throw new Error(`${what}[${i}]: ${a} != ${e} (tolerance ${tol})`);
  }
}

export interface Child {
  proc: ChildProcess;
  /** JSON lines printed on stdout. */
  messages: Array<Record<string, unknown>>;
  waitFor(pred: (m: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
  stderr(): string;
}

/** Run test/helpers/<script> with tsx; stdout lines are parsed as JSON messages. */
export function spawnHelper(script: string, args: string[], env: NodeJS.ProcessEnv = {}): Child {
  return spawnJsonLines(join(HELPERS_DIR, script), args, { env, execArgv: ['--import', 'tsx'] });
}

/** Run a TypeScript file in a child node (execArgv: e.g. tsx's --import); stdout lines are parsed as JSON messages. */
export function spawnJsonLines(file: string, args: string[], o: { env?: NodeJS.ProcessEnv; execArgv?: string[] } = {}): Child {
  const script = basename(file);
  const proc = spawn(process.execPath, [...(o.execArgv ?? []), file, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...o.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const messages: Array<Record<string, unknown>> = [];
  const waiters: Array<{ pred: (m: Record<string, unknown>) => boolean; resolve: (m: Record<string, unknown>) => void }> = [];
  let err = '';
  proc.stderr!.on('data', (d) => (err = (err + String(d)).slice(-64_000)));
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(line);
    } catch {
      return;
    }
    messages.push(m);
    for (const w of [...waiters]) {
      if (w.pred(m)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  return {
    proc,
    messages,
    exited,
    stderr: () => err,
    waitFor(pred, timeoutMs = 20_000) {
      const found = messages.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`timed out waiting for a message from ${script}; stderr:\n${err.slice(-3000)}`)), timeoutMs);
        waiters.push({ pred, resolve: (m) => (clearTimeout(t), resolve(m)) });
        exited.then((code) => {
          clearTimeout(t);
          reject(new Error(`${script} exited (${code}) before the expected message; stderr:\n${err.slice(-3000)}`));
        });
      });
    },
  };
}

export function until(pred: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (pred()) return resolve();
      if (Date.now() > end) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 20);
    };
    tick();
  });
}
