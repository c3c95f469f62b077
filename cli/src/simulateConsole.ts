// What `fedsam simulate` keeps on a terminal below its log lines: the per-round Dice table so far, the round in
// progress and each site's state with a progress bar. Drawn from the same state as the dashboard.
import type { FederationState, FederationView } from '@fedsam/server/dashboard/federationView';
import { renderTable } from '@fedsam/shared/table';
import { colourEnabled, paint, paintName } from '@fedsam/shared/console/color';
import { LiveRegion } from '@fedsam/shared/console/liveRegion';
import { isPrettyLog, setConsole } from '@fedsam/shared/log';

const BUSY = new Set(['downloading', 'training', 'uploading', 'evaluating']);

export function bar(fraction: number, width: number): string {
  const n = Math.round(Math.max(0, Math.min(1, fraction)) * width);
  return `[${'█'.repeat(n)}${'░'.repeat(width - n)}]`;
}

/** The Dice table: one row per evaluated round (the same columns simulate prints when not on a terminal). */
export function diceRows(s: FederationState, names: string[], boxMean: number, elapsedOf: (round: number) => number | undefined) {
  return s.rounds.filter((r) => r.mean_dice !== null).map((r) => [
    r.round, ...names.map((n) => r.sites[n]?.dice ?? undefined), r.mean_dice ?? undefined, boxMean, elapsedOf(r.round),
  ]);
}

export function consoleLines(s: FederationState, o: { names: string[]; headers: string[]; boxMean: number; colour: boolean; elapsedOf: (round: number) => number | undefined; t0: number; now?: number }): string[] {
  const on = o.colour;
  const rows = diceRows(s, o.names, o.boxMean, o.elapsedOf);
  const table = renderTable(o.headers, rows).split('\n');
  const lines = [paint.bold(on, table[0]!), paint.dim(on, table[1]!), ...table.slice(2)];
  const done = s.completed_round / Math.max(1, s.total_rounds);
  const phase = s.phase === 'fit' ? 'training' : s.phase === 'evaluate' ? 'evaluating' : s.phase === 'waiting' ? 'waiting for sites' : s.phase;
  const round = s.phase === 'finished' ? `${s.completed_round} of ${s.total_rounds} rounds done` : `round ${s.round} of ${s.total_rounds}`;
  lines.push('', `${paint.bold(on, round)}  ${bar(done, 24)}  ${phase}  ${paint.dim(on, `${Math.round(((o.now ?? Date.now()) - o.t0) / 1000)} s`)}`);
  const now = o.now ?? Date.now();
  for (const site of s.sites) {
    const state = site.state.padEnd(11);
    let detail = '';
    if (site.progress !== null && BUSY.has(site.state)) detail = `${bar(site.progress, 20)} ${String(Math.round(site.progress * 100)).padStart(3)}%  ${site.detail ?? ''}`;
    else if (site.since && BUSY.has(site.state)) detail = paint.dim(on, `for ${Math.round((now - Date.parse(site.since)) / 1000)} s`);
    else if (site.detail) detail = paint.dim(on, site.detail);
    const colouredState = BUSY.has(site.state) ? paint.magenta(on, state) : site.state === 'done' ? paint.green(on, state) : site.state === 'dropped' || site.state === 'offline' ? paint.red(on, state) : state;
    const refused = site.refusals.length ? paint.red(on, `  ${site.refusals.length} refused (last: ${site.refusals.at(-1)!.reason})`) : '';
    lines.push(`  ${paintName(on, site.name.padEnd(8), o.names)} ${colouredState} ${detail}${refused}`.trimEnd());
  }
  return lines;
}

/** Events the live block shows: on a terminal they do not scroll past as log lines too (--log-level debug shows them). */
export const SHOWN_LIVE = ['site_joined', 'joined', 'task_sent', 'fit_started', 'local_fit_done', 'update_accepted', 'evaluation_started',
  'evaluation_accepted', 'evaluated', 'round_started', 'shutdown', 'site_lost', 'site_left', 'dashboard_started'];

export interface SimulateConsole {
  /** True when the table is drawn live on the terminal (so the caller does not print its rows as they come). */
  live: boolean;
  /** Draw this federation's state from now on. */
  follow(view: FederationView, o: { headers: string[]; boxMean: number; t0: number; elapsedAt: Map<number, number> }): void;
  close(): void;
}

/**
 * On a terminal with human-readable logs: log lines go above a live block (set up before the server starts, so that
 * its first events already go there). Elsewhere: nothing (rows are printed as they come).
 */
export function simulateConsole(names: string[]): SimulateConsole {
  const region = new LiveRegion(process.stderr);
  if (!region.active || !isPrettyLog()) return { live: false, follow() {}, close() {} };
  const colour = colourEnabled(process.stderr);
  setConsole({ sink: (line) => region.print(line), quietEvents: SHOWN_LIVE, sites: names });
  let draw = () => {};
  let view: FederationView | undefined;
  const tick = setInterval(() => draw(), 1000);
  tick.unref();
  return {
    live: true,
    follow(v, o) {
      view = v;
      draw = () => region.set(consoleLines(v.snapshot(), { ...o, names, colour, elapsedOf: (r) => o.elapsedAt.get(r) }));
      v.on('change', draw);
      draw();
    },
    close() {
      clearInterval(tick);
      view?.off('change', draw);
      if (view) draw();
      region.close({ keep: true });
      setConsole();
    },
  };
}
