// The Strategy interface, shaped like Flower's (flwr/server/strategy/strategy.py): six verbs, in TypeScript names.
//
//   Flower                  here
//   initialize_parameters   initialize         the initial global, or undefined for the server's base model
//   configure_fit           configureFit       which sites train this round, and the FitIns (FitTask) of each
//   aggregate_fit           aggregateFit       the round's updates -> the next global + fit metrics
//   configure_evaluate      configureEvaluate  which sites evaluate the global, and the EvaluateIns of each
//   aggregate_evaluate      aggregateEvaluate  the sites' evaluation results -> metrics
//   evaluate                evaluate           server-side evaluation of the global (none of ours has data for it)
//
// One difference: Flower's aggregate_fit receives all results of a round at once. Here updates are folded in as they
// arrive (memory stays at one model for FedAvg whatever the number of sites, and the work after the last upload is
// one pass): aggregateFit opens the round's FitAggregation, the coordinator add()s each validated update, and
// finish() returns what aggregate_fit returns. Update buffers are the Aggregator's business (aggregator.ts); a
// strategy asks it for a streaming weighted mean or for all updates, and for the buffer of the next global.
import type { HostTensor } from '@fedsam/shared/safetensors';
import type { WireFitConfig } from '@fedsam/shared/transfer/messages';
import type { ServerConfig } from '../config.ts';
import type { Aggregator } from './aggregator.ts';
import type { NamedTensors } from './aggregate.ts';
import type { StrategyName } from './config.ts';

/** What the server config says about sampling and local training (the arguments of Flower's FedAvg). */
export type StrategyOptions = Pick<ServerConfig, 'fraction_fit' | 'min_fit_clients' | 'fraction_evaluate' | 'min_evaluate_clients' | 'seed' | 'fit'>;

/** The sites a round may sample from (Flower's ClientManager). */
export interface ClientSample {
  /** Sites with a live session, sorted. */
  available: readonly string[];
  /** 1 for a round's first attempt; a round retried for lack of updates samples again with the next attempt. */
  attempt: number;
}

/**
 * What a site gets with its FitTask (the global itself travels by version, DownloadGlobal). A strategy that sends
 * more (per-site tensors such as SCAFFOLD's control variates, extra params) extends this.
 */
export interface FitIns {
  config: WireFitConfig;
}

/** What a site gets with its EvaluateTask (nothing yet: it evaluates the global on its validation split). */
export type EvaluateIns = Record<string, never>;

export interface FitInstruction {
  site: string;
  ins: FitIns;
}

export interface EvaluateInstruction {
  site: string;
  ins: EvaluateIns;
}

/**
 * A site's validated update (Flower's FitRes). `numExamples` is what the site reported; `weight` is what the mean
 * gives it under the server's weighting policy (weighting.ts: uniform, capped, registry, or the count as reported).
 */
export interface FitRes {
  site: string;
  weights: NamedTensors;
  numExamples: number;
  weight: number;
  metrics: Record<string, number>;
  /** Called by the aggregator once it no longer reads `weights` (their receive buffer can be reused). */
  release?: () => void;
}

/** A site's evaluation of the global (Flower's EvaluateRes); `weight` as in FitRes. */
export interface EvaluateRes {
  site: string;
  numExamples: number;
  weight: number;
  metrics: Record<string, number>;
}

/** What aggregate_fit returns: the next global and the round's fit metrics. */
export interface FitAggregate {
  weights: NamedTensors;
  metrics: Record<string, number>;
}

/** One round's aggregation, fed update by update (see the header). */
export interface FitAggregation {
  /** Fold in one validated update; its arrays may be kept until its `release`. */
  add(result: FitRes): void;
  readonly count: number;
  readonly totalWeight: number;
  /** The next global and fit metrics, once the round's updates are in. Called once. */
  finish(): FitAggregate;
  /** The round is dropped (retried or stopped) without finish(): every update still held is released. */
  abandon(): void;
}

/** Server-side state a strategy needs to continue after a restart (FedOpt moments, FedAvgM momentum). */
export interface StrategyState {
  scalars: Record<string, number>;
  tensors: Map<string, HostTensor>;
}

/** State tensors: each named set under its prefix (`m.` + tensor name, ...), as state files store them. */
export function packStateTensors(sets: Record<string, NamedTensors | undefined>): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const [prefix, set] of Object.entries(sets)) for (const [n, t] of set ?? []) out.set(`${prefix}.${n}`, t);
  return out;
}

/** The set under `prefix` in a state, as copies the strategy owns. */
export function unpackStateTensors(state: StrategyState, prefix: string): NamedTensors {
  const out: NamedTensors = new Map();
  for (const [n, t] of state.tensors) {
    if (n.startsWith(`${prefix}.`)) out.set(n.slice(prefix.length + 1), { dtype: t.dtype, shape: [...t.shape], data: (t.data as Float32Array).slice() });
  }
  return out;
}

export interface Strategy {
  /** The config name (`strategy.name`, `--strategy`), also recorded in state.json. */
  readonly name: StrategyName;
  /** Where this strategy's updates are received and kept, and where new globals are written. */
  readonly aggregator: Aggregator;
  initialize(): NamedTensors | undefined;
  configureFit(round: number, clients: ClientSample): FitInstruction[];
  aggregateFit(round: number, global: NamedTensors): FitAggregation;
  configureEvaluate(round: number, clients: ClientSample): EvaluateInstruction[];
  aggregateEvaluate(round: number, results: readonly EvaluateRes[]): { metrics: Record<string, number> };
  evaluate(round: number, global: NamedTensors): { loss: number; metrics: Record<string, number> } | undefined;
  saveState(): StrategyState;
  loadState(state: StrategyState): void;
}
