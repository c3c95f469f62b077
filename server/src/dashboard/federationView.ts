// What the federation page shows (GET /api/state), kept up to date from the server's events: the round and its
// phase, each site's state, the per-round metrics, bytes moved and aggregation times. Only metrics and names:
// nothing a site would not send the server anyway (no images, no data).
import { EventEmitter } from 'node:events';
import type { RoundRecord } from '../state.ts';

export type SiteState = 'offline' | 'connected' | 'downloading' | 'training' | 'uploading' | 'evaluating' | 'done' | 'dropped' | 'left';
export type Phase = 'waiting' | 'fit' | 'evaluate' | 'finished' | 'stopped';

export interface Refusal {
  round: number;
  /** Short machine-readable reason (e.g. bad_shape, stale_round, checksum). */
  reason: string;
  message: string;
  at: string;
}

export interface SiteView {
  name: string;
  state: SiteState;
  connected: boolean;
  /** Last call of the site the server saw (heartbeats, task polls, transfers). */
  last_heartbeat: string | null;
  /** Round of the site's current or last task. */
  round: number | null;
  /** Since when the site is in its state. */
  since: string | null;
  /** 0..1 within the current task, where known (the simulation's sites report it). */
  progress: number | null;
  detail: string | null;
  rounds_trained: number;
  /** Validation Dice of the global model on this site, last evaluation. */
  dice: number | null;
  refusals: Refusal[];
}

export interface RoundView {
  round: number;
  mean_dice: number | null;
  /** The sites' Ditto personal models (fit.ditto_lambda), when they report them. */
  mean_personal_dice?: number;
  box_dice: number | null;
  sites: Record<string, { dice: number | null; iou: number | null; num_examples: number; personal_dice?: number }>;
  aggregation_seconds: number | null;
  duration_seconds: number | null;
  /** Weight bytes received (updates) and sent (downloads of the global) during this round. */
  bytes_in: number;
  bytes_out: number;
  accepted?: string[];
  failed?: Record<string, string>;
}

export interface FederationState {
  kind: 'federation';
  title: string;
  strategy: string;
  phase: Phase;
  /** Round in progress, or the last completed one. */
  round: number;
  completed_round: number;
  total_rounds: number;
  started_at: string;
  elapsed_seconds: number;
  rounds: RoundView[];
  sites: SiteView[];
  bytes: { in: number; out: number };
  /** Dice of the filled box (weighted over the sites' validation objects), as the sites report it. */
  box_baseline: number | null;
}

export interface FederationViewOptions {
  title?: string;
  strategy: string;
  totalRounds: number;
  /** The configured sites, in the order the page lists them. */
  sites: string[];
  /** Last time the server heard from a site (ms since the epoch), if it has a session. */
  lastSeen?: (site: string) => number | undefined;
  now?: () => number;
}

const MAX_REFUSALS_KEPT = 20;

/** 'change' after every event (the dashboard throttles what it sends). */
export class FederationView extends EventEmitter<{ change: [] }> {
  private readonly o: FederationViewOptions;
  private readonly now: () => number;
  private readonly startedAt: number;
  private readonly sites = new Map<string, SiteView>();
  private readonly rounds = new Map<number, RoundView>();
  private phase: Phase = 'waiting';
  private round = 0;
  private completed = 0;
  private totalIn = 0;
  private totalOut = 0;

  constructor(o: FederationViewOptions) {
    super();
    this.setMaxListeners(0);
    this.o = o;
    this.now = o.now ?? Date.now;
    this.startedAt = this.now();
    for (const name of o.sites) this.site(name);
  }

  private iso(t = this.now()): string {
    return new Date(t).toISOString();
  }

  private changed(): void {
    this.emit('change');
  }

  private site(name: string): SiteView {
    let s = this.sites.get(name);
    if (!s) {
      s = { name, state: 'offline', connected: false, last_heartbeat: null, round: null, since: null, progress: null, detail: null, rounds_trained: 0, dice: null, refusals: [] };
      this.sites.set(name, s);
    }
    return s;
  }

  private roundView(round: number): RoundView {
    let r = this.rounds.get(round);
    if (!r) {
      r = { round, mean_dice: null, box_dice: null, sites: {}, aggregation_seconds: null, duration_seconds: null, bytes_in: 0, bytes_out: 0 };
      this.rounds.set(round, r);
    }
    return r;
  }

  private setState(name: string, state: SiteState, round?: number): SiteView {
    const s = this.site(name);
    if (s.state !== state) s.since = this.iso();
    s.state = state;
    if (round !== undefined) s.round = round;
    s.progress = null;
    s.detail = null;
    return s;
  }

  // --- events -----------------------------------------------------------------------------------------------------

  siteJoined(name: string): void {
    const s = this.setState(name, 'connected');
    s.connected = true;
    this.changed();
  }

  siteLost(name: string, reason: string): void {
    const s = this.setState(name, reason.startsWith('left') ? 'left' : reason.startsWith('session replaced') ? 'connected' : 'offline');
    s.connected = s.state === 'connected';
    s.detail = reason.replace(/^left: /, '');
    this.changed();
  }

  phaseStarted(kind: 'fit' | 'evaluate', round: number): void {
    this.phase = kind;
    this.round = round;
    for (const s of this.sites.values()) if (s.connected && s.state === 'done') this.setState(s.name, 'connected');
    this.changed();
  }

  taskSent(name: string, kind: 'fit' | 'evaluate', round: number): void {
    this.setState(name, kind === 'fit' ? 'downloading' : 'evaluating', round);
    this.changed();
  }

  /** The site downloaded the global model of a fit task and trains on it now. */
  downloaded(name: string, bytes: number): void {
    this.transferred('out', bytes);
    const s = this.site(name);
    if (s.state === 'downloading') this.setState(name, 'training');
    this.changed();
  }

  uploadStarted(name: string, round: number): void {
    this.setState(name, 'uploading', round);
    this.changed();
  }

  updateAccepted(name: string, round: number): void {
    const s = this.setState(name, 'done', round);
    s.rounds_trained++;
    this.changed();
  }

  refused(name: string, round: number, reason: string, message: string): void {
    const s = this.site(name);
    s.refusals.push({ round, reason, message, at: this.iso() });
    if (s.refusals.length > MAX_REFUSALS_KEPT) s.refusals.splice(0, s.refusals.length - MAX_REFUSALS_KEPT);
    this.changed();
  }

  /** The site dropped out of a round (no answer in time, too many refusals, abandoned). */
  dropped(name: string, round: number, reason: string): void {
    const s = this.setState(name, 'dropped', round);
    s.detail = reason;
    this.changed();
  }

  evaluationAccepted(name: string, round: number, metrics: Record<string, number>): void {
    const s = this.setState(name, 'done', round);
    if (typeof metrics.dice === 'number') s.dice = metrics.dice;
    this.changed();
  }

  /** Progress within a site's task (0..1), where the site's engine reports it (the simulation's do). */
  progress(name: string, fraction: number, detail?: string): void {
    const s = this.site(name);
    s.progress = Math.max(0, Math.min(1, fraction));
    if (detail !== undefined) s.detail = detail;
    this.changed();
  }

  roundCompleted(rec: RoundRecord): void {
    this.completed = rec.round;
    const r = this.roundView(rec.round);
    if (rec.fit) {
      r.aggregation_seconds = rec.fit.aggregation_seconds;
      r.duration_seconds = rec.fit.duration_seconds;
      r.accepted = rec.fit.accepted;
      r.failed = rec.fit.failed;
    }
    this.changed();
  }

  evaluated(rec: RoundRecord): void {
    if (!rec.evaluate) return;
    const r = this.roundView(rec.round);
    r.mean_dice = rec.evaluate.metrics.dice ?? null;
    r.box_dice = rec.evaluate.metrics.box_dice ?? null;
    if (typeof rec.evaluate.metrics.personal_dice === 'number') r.mean_personal_dice = rec.evaluate.metrics.personal_dice;
    for (const [name, v] of Object.entries(rec.evaluate.sites)) {
      r.sites[name] = { dice: v.metrics.dice ?? null, iou: v.metrics.iou ?? null, num_examples: v.num_examples,
        ...(typeof v.metrics.personal_dice === 'number' ? { personal_dice: v.metrics.personal_dice } : {}) };
    }
    this.changed();
  }

  /** Rounds done before this view started (a resumed server). */
  restore(history: RoundRecord[], completedRound: number): void {
    for (const rec of history) {
      this.roundCompleted(rec);
      this.evaluated(rec);
    }
    this.completed = completedRound;
    this.round = completedRound;
  }

  finished(): void {
    this.phase = 'finished';
    this.round = this.completed;
    this.changed();
  }

  stopped(): void {
    if (this.phase !== 'finished') this.phase = 'stopped';
    this.changed();
  }

  transferred(direction: 'in' | 'out', bytes: number): void {
    const r = this.roundView(this.round);
    if (direction === 'in') {
      this.totalIn += bytes;
      r.bytes_in += bytes;
    } else {
      this.totalOut += bytes;
      r.bytes_out += bytes;
    }
  }

  // --- the state ----------------------------------------------------------------------------------------------------

  snapshot(): FederationState {
    const rounds = [...this.rounds.values()].sort((a, b) => a.round - b.round);
    const lastBox = [...rounds].reverse().find((r) => r.box_dice !== null)?.box_dice ?? null;
    const sites = [...this.sites.values()].map((s) => {
      const seen = this.o.lastSeen?.(s.name);
      return { ...s, refusals: [...s.refusals], last_heartbeat: seen !== undefined ? this.iso(seen) : s.last_heartbeat };
    });
    for (const s of sites) if (s.last_heartbeat) this.site(s.name).last_heartbeat = s.last_heartbeat;
    return {
      kind: 'federation',
      title: this.o.title ?? 'federation',
      strategy: this.o.strategy,
      phase: this.phase,
      round: this.round,
      completed_round: this.completed,
      total_rounds: this.o.totalRounds,
      started_at: this.iso(this.startedAt),
      elapsed_seconds: (this.now() - this.startedAt) / 1000,
      rounds,
      sites,
      bytes: { in: this.totalIn, out: this.totalOut },
      box_baseline: lastBox,
    };
  }
}
