// The round driver: the state machine of fit and evaluation rounds. It waits for sites, asks the strategy whom to
// sample and what to send, hands the tasks out, takes validated results (validation.ts) into the strategy's
// aggregation, installs each new global and has it persisted (state.ts); logs and metrics go through the
// RoundReporter. gRPC-free: the service layer (service.ts) calls into it.
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { HostTensor } from '@fedsam/shared/safetensors';
import { tensorsVersion } from '@fedsam/shared/checkpoint/hash';
import { abortableSleep } from '@fedsam/shared/abortableSleep';
import { layoutOf, type TensorLayout } from '@fedsam/shared/transfer/manifest';
import type { EvaluationResult, Task, UpdateHeader } from '@fedsam/shared/transfer/messages';
import type { ClientRegistry, SessionEnd } from './clients.ts';
import type { ServerConfig } from './config.ts';
import { failedPrecondition, FedError, invalidArgument } from './errors.ts';
import type { ServerMetrics } from './metrics.ts';
import { RoundReporter } from './roundReporter.ts';
import { RoundFailedError, roundRetryDelayS } from './roundRetry.ts';
import { fedAvg } from './strategy/aggregate.ts';
import type { RoundRecord, SiteResult, StateStore } from './state.ts';
import type { FitAggregation, FitIns, Strategy } from './strategy/index.ts';
import { checkEvaluation, checkSlot, checkUpdateHeader } from './validation.ts';
import { ExampleWeights } from './weighting.ts';

type SlotStatus = 'open' | 'receiving' | 'accepted' | 'failed';

/** Resolve after the event loop has gone round a few times (pending I/O callbacks and immediates have run). */
function loopTurns(turns = 3): Promise<void> {
  return new Promise((resolve) => {
    const next = (left: number) => (left === 0 ? resolve() : setImmediate(() => next(left - 1)));
    next(turns);
  });
}

export interface TaskSlot {
  site: string;
  taskId: string;
  status: SlotStatus;
  refusals: number;
  reason?: string;
  /** What the strategy sends this site with its FitTask (fit phases). */
  fitIns?: FitIns;
  /** The header of the update being received (checked). */
  update?: { numExamples: number; metrics: Record<string, number> };
  /** The site has fetched this task. */
  sent?: boolean;
}

export interface Phase {
  kind: 'fit' | 'evaluate';
  round: number;
  attempt: number;
  globalVersion: string;
  slots: Map<string, TaskSlot>; // by site
  byTaskId: Map<string, TaskSlot>;
  aggregation?: FitAggregation;
  results: Map<string, Required<SiteResult>>;
  aggSeconds: number;
  startedAt: number;
  closed: boolean;
  resolveDone: () => void;
  done: Promise<void>;
}

export interface CoordinatorEvents {
  /** A fit round was aggregated (new global). */
  round: [record: RoundRecord];
  evaluated: [record: RoundRecord];
  change: [];
  finished: [];
  /** The global model changed (new version). */
  global: [version: string];
  // what live views (the dashboard) follow: a phase opened, a site got its task, started an upload, was refused...
  phase: [kind: 'fit' | 'evaluate', round: number];
  task_sent: [site: string, kind: 'fit' | 'evaluate', round: number];
  upload_started: [site: string, round: number];
  update_accepted: [site: string, round: number];
  refused: [site: string, round: number, reason: string, message: string];
  dropped: [site: string, round: number, reason: string];
  evaluation_accepted: [site: string, round: number, metrics: Record<string, number>];
}

export interface CoordinatorOptions {
  config: ServerConfig;
  strategy: Strategy;
  store: StateStore;
  registry: ClientRegistry;
  metrics: ServerMetrics;
  logger: Logger;
  baseModelHash: string;
  initialGlobal: Map<string, HostTensor>;
}

export class Coordinator extends EventEmitter<CoordinatorEvents> {
  readonly config: ServerConfig;
  readonly baseModelHash: string;
  readonly layout: TensorLayout;
  readonly strategy: Strategy;
  private readonly store: StateStore;
  private readonly registry: ClientRegistry;
  private readonly report: RoundReporter;
  /** A site's weight in means, from its reported count and the weighting policy. */
  private readonly weights: ExampleWeights;

  private global: Map<string, HostTensor>;
  private version: string;
  /** Last completed (aggregated) round. */
  private completedRound = 0;
  private phase: Phase | undefined;
  private finished = false;
  readonly history: RoundRecord[] = [];

  constructor(o: CoordinatorOptions) {
    super();
    this.setMaxListeners(0);
    this.config = o.config;
    this.strategy = o.strategy;
    this.store = o.store;
    this.registry = o.registry;
    this.report = new RoundReporter(o.metrics, o.logger);
    this.baseModelHash = o.baseModelHash;
    this.global = o.initialGlobal;
    this.version = tensorsVersion(this.global);
    this.layout = layoutOf(this.global);
    this.weights = new ExampleWeights(o.config.weighting, o.config.sites);
    this.registry.on('lost', (site, reason, end) => this.siteLost(site, reason, end));
  }

  // ---------------------------------------------------------------------------------------------------------
  // state

  get round(): number {
    return this.completedRound;
  }

  /** Round in progress (fit or evaluation), or the last completed one. */
  get currentRound(): number {
    return this.phase?.round ?? this.completedRound;
  }

  get globalVersion(): string {
    return this.version;
  }

  get globalWeights(): Map<string, HostTensor> {
    return this.global;
  }

  get isFinished(): boolean {
    return this.finished;
  }

  /** Restore from a persisted round (resume); `version` is its content version, already checked by the state store. */
  restore(round: number, global: Map<string, HostTensor>, history: RoundRecord[], version = tensorsVersion(global)): void {
    this.setGlobal(global, version);
    this.completedRound = round;
    this.history.splice(0, this.history.length, ...history);
    this.report.restored(round);
  }

  private setGlobal(g: Map<string, HostTensor>, version = tensorsVersion(g)): void {
    const old = this.global;
    this.global = g;
    this.version = version;
    if (old !== g) this.strategy.aggregator.recycle(old);
    this.emit('global', this.version);
  }

  // ---------------------------------------------------------------------------------------------------------
  // tasks

  /** What this site should do now, if anything. */
  taskFor(site: string): Task | undefined {
    if (this.finished) return { task_id: 'shutdown', round: this.completedRound, global_version: this.version, kind: 'shutdown', shutdown: { reason: 'training finished' } };
    const p = this.phase;
    if (!p || p.closed) return undefined;
    const slot = p.slots.get(site);
    if (!slot || slot.status !== 'open') return undefined;
    if (!slot.sent) {
      slot.sent = true;
      this.emit('task_sent', site, p.kind, p.round);
    }
    const base = { task_id: slot.taskId, round: p.round, global_version: p.globalVersion };
    if (p.kind === 'evaluate') return { ...base, kind: 'evaluate', evaluate: {} };
    return { ...base, kind: 'fit', fit: slot.fitIns! };
  }

  /** Resolves on the next task change (or after ms). */
  waitForChange(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.off('change', done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.on('change', done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /**
   * Validate an update header before any payload is read. On success the slot is marked receiving (call
   * acceptUpdate or refuseUpdate next).
   */
  beginUpdate(site: string, header: UpdateHeader | null | undefined): TaskSlot {
    if (!header) throw invalidArgument('protocol', 'the first frame of SubmitUpdate must be an UpdateHeader');
    // Refusals by checkSlot name no open task of this site (stale round, another site's task, a duplicate): they
    // do not count against the site's current task. Refusals of the header's contents do.
    const slot = checkSlot(this.phase, this.completedRound, site, 'fit', Number(header.round), header.task_id);
    try {
      slot.update = checkUpdateHeader(header, this.layout, this.config.limits.max_update_bytes);
    } catch (e) {
      this.countRefusal(slot);
      throw e;
    }
    slot.status = 'receiving';
    this.emit('upload_started', site, Number(header.round));
    return slot;
  }

  /** The upload for this slot may go on: its round is open and the slot is still receiving. */
  isReceiving(slot: TaskSlot): boolean {
    const p = this.phase;
    return !!p && !p.closed && p.slots.get(slot.site) === slot && slot.status === 'receiving';
  }

  /** The weight of a site's reported example count under the weighting policy (clipping logged with its name). */
  private weigh(site: string, reported: number, kind: 'fit' | 'evaluate', round: number): number {
    const w = this.weights.weigh(site, reported);
    if (w.clipped) this.report.weightClipped(round, site, kind, this.weights.policy, reported, w.weight, w.clipped);
    return w.weight;
  }

  /**
   * Fold a received, checksum-verified update into the round. Its values are finite: the transfer decoder refuses
   * NaN and infinities as the chunks arrive (TransferDecoder's checkFinite). `release` goes to the aggregator, which
   * calls it when it is done with the weights; if this throws, the caller still owns them.
   */
  acceptUpdate(slot: TaskSlot, header: UpdateHeader, weights: Map<string, HostTensor>, release?: () => void): void {
    const p = this.phase;
    if (!p || p.closed || p.kind !== 'fit' || p.slots.get(slot.site) !== slot || slot.status !== 'receiving') {
      if (slot.status === 'receiving') slot.status = 'failed';
      throw failedPrecondition('stale_round', `stale update: round ${header.round} closed while the update of site ${slot.site} was being received`);
    }
    const { numExamples, metrics } = slot.update!;
    const weight = this.weigh(slot.site, numExamples, 'fit', p.round);
    const t0 = performance.now();
    p.aggregation!.add({ site: slot.site, weights, numExamples, weight, metrics, release });
    p.aggSeconds += (performance.now() - t0) / 1000;
    slot.status = 'accepted';
    p.results.set(slot.site, { num_examples: numExamples, weight, metrics });
    this.report.updateAccepted(p.round, slot.site, numExamples, metrics);
    this.emit('update_accepted', slot.site, p.round);
    this.checkDone(p);
  }

  /**
   * Record a refused upload. `slot`: the task the upload was received for (beginUpdate returned it); while that is
   * still the site's unanswered task in the open round, the refusal counts against it and the site may try again
   * (up to max_refusals_per_round). Without a slot the upload named no open task of the site, and nothing of the
   * site's round is touched.
   */
  refuseUpdate(site: string, slot: TaskSlot | undefined, err: FedError, round?: number): void {
    this.report.updateRefused(round ?? this.currentRound, site, err);
    this.emit('refused', site, round ?? this.currentRound, err.reason, err.message);
    if (slot) this.countRefusal(slot);
  }

  private countRefusal(s: TaskSlot): void {
    const p = this.phase;
    if (!p || p.closed || p.slots.get(s.site) !== s) return;
    if (s.status === 'receiving') s.status = 'open';
    if (s.status !== 'open') return;
    s.refusals++;
    if (s.refusals >= this.config.limits.max_refusals_per_round) {
      this.fail(p, s, `${s.refusals} refused submissions`);
    }
  }

  acceptEvaluation(site: string, r: EvaluationResult): void {
    const slot = checkSlot(this.phase, this.completedRound, site, 'evaluate', Number(r.round), r.task_id);
    let checked: ReturnType<typeof checkEvaluation>;
    try {
      checked = checkEvaluation(r);
    } catch (e) {
      this.countRefusal(slot);
      throw e;
    }
    const { numExamples, metrics } = checked;
    const p = this.phase!;
    slot.status = 'accepted';
    p.results.set(site, { num_examples: numExamples, weight: this.weigh(site, numExamples, 'evaluate', p.round), metrics });
    this.report.evaluationAccepted(p.round, site, numExamples, metrics);
    this.emit('evaluation_accepted', site, p.round, metrics);
    this.checkDone(p);
  }

  /** Log a refused evaluation (acceptEvaluation has counted it against the site's task when it named one). */
  refuseEvaluation(site: string, err: FedError, round?: number): void {
    this.report.evaluationRefused(round ?? this.currentRound, site, err);
    this.emit('refused', site, round ?? this.currentRound, err.reason, err.message);
  }

  /** The site gives up its task (training failed, shutting down, ...). */
  abandon(site: string, taskId: string, reason: string): boolean {
    const p = this.phase;
    const slot = p?.slots.get(site);
    if (!p || p.closed || !slot || slot.taskId !== taskId || (slot.status !== 'open' && slot.status !== 'receiving')) return false;
    this.report.taskAbandoned(p.round, site, p.kind, reason);
    this.fail(p, slot, `abandoned: ${reason}`);
    return true;
  }

  private siteLost(site: string, reason: string, end: SessionEnd): void {
    this.report.siteLost(this.currentRound, site, reason, end, this.registry.count);
    const p = this.phase;
    const slot = p?.slots.get(site);
    // A replaced session (the site re-joined) keeps its task: it is handed out again.
    if (p && slot && slot.status === 'open' && !this.registry.has(site)) this.fail(p, slot, reason);
    else if (p && slot && slot.status === 'receiving' && !this.registry.has(site)) this.fail(p, slot, reason);
  }

  private fail(p: Phase, slot: TaskSlot, reason: string): void {
    slot.status = 'failed';
    slot.reason = reason;
    this.report.siteDropped(p.round, slot.site, p.kind, reason);
    this.emit('dropped', slot.site, p.round, reason);
    this.checkDone(p);
  }

  private checkDone(p: Phase): void {
    this.emit('change');
    for (const s of p.slots.values()) if (s.status === 'open' || s.status === 'receiving') return;
    p.resolveDone();
  }

  // ---------------------------------------------------------------------------------------------------------
  // rounds

  private openPhase(kind: 'fit' | 'evaluate', round: number, attempt: number, sites: Array<{ site: string; ins?: FitIns }>): Phase {
    let resolveDone!: () => void;
    const done = new Promise<void>((r) => (resolveDone = r));
    const slots = new Map<string, TaskSlot>();
    const byTaskId = new Map<string, TaskSlot>();
    for (const { site, ins } of sites) {
      const taskId = `${kind}-r${round}-a${attempt}-${site}-${randomBytes(4).toString('hex')}`;
      const slot: TaskSlot = { site, taskId, status: 'open', refusals: 0, fitIns: ins };
      slots.set(site, slot);
      byTaskId.set(taskId, slot);
    }
    const p: Phase = {
      kind, round, attempt, globalVersion: this.version, slots, byTaskId, results: new Map(), aggSeconds: 0,
      startedAt: performance.now(), closed: false, resolveDone, done,
      aggregation: kind === 'fit' ? this.strategy.aggregateFit(round, this.global) : undefined,
    };
    this.phase = p;
    this.emit('phase', kind, round);
    this.emit('change');
    return p;
  }

  private async runPhase(p: Phase, timeoutMs: number, signal: AbortSignal): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)));
    let onAbort!: () => void;
    const aborted = new Promise<void>((r) => {
      onAbort = r;
      signal.addEventListener('abort', onAbort, { once: true });
    });
    if (p.slots.size === 0) p.resolveDone();
    await Promise.race([p.done, timedOut, aborted]);
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
    p.closed = true;
    for (const s of p.slots.values()) {
      if (s.status === 'open' || s.status === 'receiving') {
        s.status = 'failed';
        s.reason = signal.aborted ? 'server stopping' : `no answer within ${(timeoutMs / 1000).toFixed(1)} s`;
        this.report.siteTimedOut(p.round, s.site, p.kind, s.reason);
        this.emit('dropped', s.site, p.round, s.reason);
      }
    }
    this.emit('change');
  }

  private failedOf(p: Phase): Record<string, string> {
    const out: Record<string, string> = {};
    for (const s of p.slots.values()) if (s.status === 'failed') out[s.site] = s.reason ?? 'failed';
    return out;
  }

  private recordFor(round: number): RoundRecord {
    let r = this.history.find((h) => h.round === round);
    if (!r) {
      r = { round };
      this.history.push(r);
      this.history.sort((a, b) => a.round - b.round);
    }
    return r;
  }

  private async fitRound(round: number, signal: AbortSignal): Promise<void> {
    const c = this.config;
    for (let attempt = 1; ; attempt++) {
      await this.registry.waitForAvailable(c.min_available_clients, c.wait_for_clients_timeout_s === null ? null : c.wait_for_clients_timeout_s * 1000, signal);
      if (signal.aborted) throw signal.reason;
      const available = this.registry.available();
      const instructions = this.strategy.configureFit(round, { available, attempt });
      const sampled = instructions.map((i) => i.site);
      const p = this.openPhase('fit', round, attempt, instructions);
      this.report.roundStarted(round, attempt, sampled, available.length, this.strategy.name);
      await this.runPhase(p, c.round_timeout_s * 1000, signal);
      if (signal.aborted) {
        p.aggregation!.abandon();
        throw signal.reason;
      }
      // The round's own work (mean, content hash, wire encoding, files) is ~50 ms of CPU for a sam-vit-base decoder.
      // It runs in steps with turns of the event loop in between, so that the RPC which completed the round gets
      // its answer out first (headers, message and trailers take a few turns) and heartbeats and downloads go on.
      await loopTurns();
      const duration = (performance.now() - p.startedAt) / 1000;
      this.report.roundEnded(duration);
      const accepted = [...p.slots.values()].filter((s) => s.status === 'accepted').map((s) => s.site);
      if (accepted.length < c.min_fit_clients || accepted.length === 0) {
        p.aggregation!.abandon();
        this.report.roundRetry(round, attempt, accepted, this.failedOf(p), c.min_fit_clients);
        if (c.max_round_attempts > 0 && attempt >= c.max_round_attempts) throw new RoundFailedError(round, attempt, accepted.length, c.min_fit_clients, this.failedOf(p));
        // sites that fail at once (a bad config, a bug) must not turn the retries into a busy loop
        await abortableSleep(roundRetryDelayS(c.round_retry_delay_s, attempt) * 1000, signal);
        if (signal.aborted) throw signal.reason;
        continue;
      }
      const t0 = performance.now();
      const { weights: next, metrics: fitMetrics } = p.aggregation!.finish();
      const aggSeconds = p.aggSeconds + (performance.now() - t0) / 1000;
      this.report.aggregated(aggSeconds);
      await loopTurns();
      const averaged = round === c.rounds && c.final_average_rounds > 1 ? await this.tailAverage(round, next) : undefined;
      this.setGlobal(averaged?.global ?? next);
      this.completedRound = round;
      this.phase = undefined;
      const results = [...p.results.entries()];
      const rec = this.recordFor(round);
      rec.fit = {
        attempts: attempt,
        sampled,
        accepted,
        failed: this.failedOf(p),
        num_examples: results.reduce((a, [, r]) => a + r.num_examples, 0),
        metrics: fitMetrics,
        sites: Object.fromEntries(results),
        aggregation_seconds: aggSeconds,
        duration_seconds: duration,
        global_version: this.version,
        ...(averaged ? { averaged_rounds: averaged.rounds } : {}),
      };
      const central = this.strategy.evaluate(round, this.global);
      if (central) rec.server_evaluate = central;
      await this.store.saveRound({
        round, global: this.global, globalVersion: this.version, baseModelHash: this.baseModelHash,
        strategyName: this.strategy.name, strategy: this.strategy.saveState(), history: this.history,
      });
      this.report.roundCompleted(round, accepted, rec.fit.failed, aggSeconds, this.version, rec.fit.metrics);
      this.emit('round', rec);
      return;
    }
  }

  /**
   * The last round's global as the mean of its own and the final_average_rounds − 1 globals before it, read from
   * their round folders (a resumed server has them too); a folder already pruned is left out, and said so.
   */
  private async tailAverage(round: number, last: Map<string, HostTensor>): Promise<{ global: Map<string, HostTensor>; rounds: number[] }> {
    const parts = [{ weights: last, numExamples: 1 }];
    const rounds = [round];
    const missing: number[] = [];
    for (let r = round - 1; r >= Math.max(1, round - this.config.final_average_rounds + 1); r--) {
      const g = await this.store.loadRoundGlobal(r);
      if (g) {
        parts.push({ weights: g, numExamples: 1 });
        rounds.unshift(r);
      } else missing.push(r);
    }
    this.report.finalAverage(round, rounds, missing);
    return { global: fedAvg(parts), rounds };
  }

  private async evaluateRound(round: number, signal: AbortSignal): Promise<void> {
    const c = this.config;
    const available = this.registry.available();
    const need = Math.max(1, c.min_evaluate_clients);
    const instructions = this.strategy.configureEvaluate(round, { available, attempt: 1 });
    if (instructions.length === 0) {
      if (c.fraction_evaluate > 0) this.report.evaluationSkipped(round, available.length, need);
      return;
    }
    const sampled = instructions.map((i) => i.site);
    const p = this.openPhase('evaluate', round, 1, instructions.map((i) => ({ site: i.site })));
    this.report.evaluationStarted(round, sampled);
    await this.runPhase(p, c.evaluate_timeout_s * 1000, signal);
    this.phase = undefined;
    if (signal.aborted) throw signal.reason;
    const results = [...p.results.entries()];
    const rec = this.recordFor(round);
    rec.evaluate = {
      sampled,
      failed: this.failedOf(p),
      num_examples: results.reduce((a, [, r]) => a + r.num_examples, 0),
      metrics: this.strategy.aggregateEvaluate(round, results.map(([site, r]) => ({ site, numExamples: r.num_examples, weight: r.weight, metrics: r.metrics }))).metrics,
      sites: Object.fromEntries(results),
      duration_seconds: (performance.now() - p.startedAt) / 1000,
      global_version: p.globalVersion,
    };
    this.report.evaluationCompleted(round, results.length, need, rec.evaluate.metrics, rec.evaluate.failed);
    await this.store.updateHistory(this.history);
    this.emit('evaluated', rec);
  }

  /** Run rounds completedRound+1 .. config.rounds, then tell the sites to shut down. */
  async run(signal: AbortSignal): Promise<void> {
    const c = this.config;
    if (c.evaluate_initial && this.completedRound === 0 && !this.history.some((h) => h.round === 0 && h.evaluate)) {
      await this.registry.waitForAvailable(c.min_available_clients, c.wait_for_clients_timeout_s === null ? null : c.wait_for_clients_timeout_s * 1000, signal);
      await this.evaluateRound(0, signal);
    }
    for (let round = this.completedRound + 1; round <= c.rounds; round++) {
      await this.fitRound(round, signal);
      if (c.evaluate_every > 0 && (round % c.evaluate_every === 0 || round === c.rounds)) await this.evaluateRound(round, signal);
    }
    this.finished = true;
    this.emit('change');
    this.emit('finished');
    this.report.trainingFinished(this.completedRound, this.version);
  }
}
