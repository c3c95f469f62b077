// What the round driver tells the outside world: one JSON log event and the Prometheus metrics per thing that
// happens in a round. The coordinator calls these; the event names are the log's `event` field.
import type { Logger } from 'pino';
import type { FedError } from './errors.ts';
import type { ServerMetrics } from './metrics.ts';
import type { SessionEnd } from './clients.ts';

export class RoundReporter {
  constructor(private readonly metrics: ServerMetrics, private readonly log: Logger) {}

  restored(round: number): void {
    this.metrics.round.set(round);
  }

  updateAccepted(round: number, site: string, numExamples: number, metrics: Record<string, number>): void {
    this.metrics.updates.inc({ result: 'accepted', reason: '' });
    this.log.info({ event: 'update_accepted', round, site, num_examples: numExamples, metrics }, 'update accepted');
  }

  updateRefused(round: number, site: string, err: FedError): void {
    this.metrics.updates.inc({ result: 'refused', reason: err.reason });
    this.log.warn({ event: 'update_refused', round, site, code: err.code, reason: err.reason, err: err.message }, 'update refused');
  }

  evaluationAccepted(round: number, site: string, numExamples: number, metrics: Record<string, number>): void {
    this.log.info({ event: 'evaluation_accepted', round, site, num_examples: numExamples, metrics }, 'evaluation accepted');
  }

  /** A site claimed more examples than the weighting policy gives it (weighting.ts): logged with its name. */
  weightClipped(round: number, site: string, kind: 'fit' | 'evaluate', policy: string, reported: number, weight: number, why: string): void {
    this.log.warn({ event: 'weight_clipped', round, site, kind, policy, reported, weight }, `example count of site ${site} not taken as reported: ${why}`);
  }

  evaluationRefused(round: number, site: string, err: FedError): void {
    this.log.warn({ event: 'evaluation_refused', round, site, code: err.code, reason: err.reason, err: err.message }, 'evaluation refused');
  }

  taskAbandoned(round: number, site: string, kind: string, reason: string): void {
    this.log.warn({ event: 'task_abandoned', round, site, kind, reason }, 'site abandoned its task');
  }

  siteLost(round: number, site: string, reason: string, end: SessionEnd, connected: number): void {
    this.log[end === 'expired' || end === 'revoked' ? 'warn' : 'info']({ event: 'site_lost', round, site, reason }, 'site session ended');
    this.metrics.clientsConnected.set(connected);
  }

  siteDropped(round: number, site: string, kind: string, reason: string): void {
    this.log.warn({ event: 'site_dropped', round, site, kind, reason }, 'site dropped from round');
  }

  siteTimedOut(round: number, site: string, kind: string, reason: string): void {
    this.log.warn({ event: 'site_timeout', round, site, kind, reason }, 'site did not answer in time');
  }

  roundStarted(round: number, attempt: number, sampled: string[], available: number, strategy: string): void {
    this.metrics.round.set(round);
    this.log.info({ event: 'round_started', round, attempt, sampled, available, strategy }, 'fit round started');
  }

  roundEnded(seconds: number): void {
    this.metrics.roundSeconds.observe(seconds);
  }

  roundRetry(round: number, attempt: number, accepted: string[], failed: Record<string, string>, minFitClients: number): void {
    this.metrics.roundRetries.inc();
    this.log.warn({ event: 'round_retry', round, attempt, accepted, failed, min_fit_clients: minFitClients }, 'too few updates: retrying the round');
  }

  finalAverage(round: number, rounds: number[], missing: number[]): void {
    this.log.info({ event: 'final_average', round, rounds, ...(missing.length ? { missing } : {}) }, `the final global is the mean of the globals of rounds ${rounds.join(', ')}`);
  }

  aggregated(seconds: number): void {
    this.metrics.aggregationSeconds.observe(seconds);
  }

  roundCompleted(round: number, accepted: string[], failed: Record<string, string>, aggregationSeconds: number, globalVersion: string, metrics: Record<string, number>): void {
    this.metrics.roundsCompleted.inc();
    this.log.info({ event: 'round_completed', round, accepted, failed, aggregation_seconds: aggregationSeconds, global_version: globalVersion, metrics }, 'fit round aggregated');
  }

  evaluationSkipped(round: number, available: number, minEvaluateClients: number): void {
    this.log.warn({ event: 'evaluation_skipped', round, available, min_evaluate_clients: minEvaluateClients }, 'too few sites to evaluate');
  }

  evaluationStarted(round: number, sampled: string[]): void {
    this.log.info({ event: 'evaluation_started', round, sampled }, 'evaluation round started');
  }

  evaluationCompleted(round: number, answered: number, minEvaluateClients: number, metrics: Record<string, number>, failed: Record<string, string>): void {
    for (const [k, v] of Object.entries(metrics)) this.metrics.globalMetric.set({ metric: k }, v);
    if (answered < minEvaluateClients) {
      this.log.warn({ event: 'evaluation_incomplete', round, answered, min_evaluate_clients: minEvaluateClients }, 'fewer evaluations than min_evaluate_clients');
    }
    this.log.info({ event: 'evaluation_completed', round, metrics, failed }, 'evaluation round completed');
  }

  trainingFinished(round: number, globalVersion: string): void {
    this.log.info({ event: 'training_finished', round, global_version: globalVersion }, 'all rounds done');
  }
}
