// FedAvg (McMahan et al. 2017), as Flower's FedAvg: sample a fraction of the connected sites (at least
// min_fit_clients), send each the same local-training config, average the updates weighted by their numbers of
// examples (FitRes.weight: as the server's weighting policy takes them, weighting.ts). The other strategies build
// on it, as in Flower.
import { DITTO_LAMBDA_PARAM, type WireFitConfig } from '@fedsam/shared/transfer/messages';
import { SAM_FINETUNE_LR } from '@fedsam/shared/train/lr';
import { boxJitterToWire, RECIPE_BOX_JITTER } from '@fedsam/shared/train/boxJitter';
import { ServerConfigSchema } from '../config.ts';
import { weightedMetrics, type NamedTensors } from './aggregate.ts';
import { Aggregator, type UpdateHolding, type UpdateSum } from './aggregator.ts';
import type { StrategyName } from './config.ts';
import { hashSeed, sampleSites, sampleSize, siteSeed } from './sampling.ts';
import type {
  ClientSample, EvaluateInstruction, EvaluateRes, FitAggregate, FitAggregation, FitInstruction, FitRes, Strategy, StrategyOptions, StrategyState,
} from './strategy.ts';

/** Sampling and local training as the server config's defaults give them (for a strategy made without a config). */
export function defaultStrategyOptions(): StrategyOptions {
  return ServerConfigSchema.parse({});
}

/** A FitAggregation over any way of holding updates; fit metrics are the weighted means of the sites' (FitRes.weight). */
export function fitAggregation(
  held: { add(u: FitRes): void; readonly count: number; readonly totalWeight: number; abandon(): void },
  weights: () => NamedTensors,
): FitAggregation {
  const reported: Array<{ weight: number; metrics: Record<string, number> }> = [];
  return {
    add: (u) => {
      held.add(u);
      reported.push({ weight: u.weight, metrics: u.metrics });
    },
    get count() {
      return held.count;
    },
    get totalWeight() {
      return held.totalWeight;
    },
    finish: (): FitAggregate => ({ weights: weights(), metrics: weightedMetrics(reported) }),
    abandon: () => held.abandon(),
  };
}

export class FedAvg implements Strategy {
  readonly name: StrategyName = 'fedavg';
  readonly aggregator: Aggregator;

  constructor(protected readonly options: StrategyOptions = defaultStrategyOptions(), holding: UpdateHolding = 'streamed') {
    this.aggregator = new Aggregator(holding);
  }

  /** The server's base model is the initial global. */
  initialize(): NamedTensors | undefined {
    return undefined;
  }

  /** Flower's on_fit_config_fn: what each sampled site trains with (its own seed per round). */
  protected fitConfig(round: number, site: string): WireFitConfig {
    const f = this.options.fit;
    return {
      epochs: f.epochs, lr: (f.lr ?? SAM_FINETUNE_LR) * Math.pow(f.lr_decay, round - 1), batch_size: f.batch_size, proximal_mu: 0, seed: siteSeed(f.seed, round, site),
      params: f.ditto_lambda === null ? {} : { [DITTO_LAMBDA_PARAM]: f.ditto_lambda },
      points_positive: f.points_positive, points_negative: f.points_negative, optimizer_state: f.optimizer_state, warmup_steps: f.warmup_steps,
      box_jitter: boxJitterToWire(f.box_jitter ?? RECIPE_BOX_JITTER),
    };
  }

  configureFit(round: number, clients: ClientSample): FitInstruction[] {
    const o = this.options;
    const k = sampleSize(clients.available.length, o.fraction_fit, o.min_fit_clients);
    return sampleSites(clients.available, k, hashSeed(o.seed, 'fit', round, clients.attempt))
      .map((site) => ({ site, ins: { config: this.fitConfig(round, site) } }));
  }

  aggregateFit(_round: number, global: NamedTensors): FitAggregation {
    const sum: UpdateSum = this.aggregator.weightedMean(global, 'global');
    return fitAggregation(sum, () => sum.mean());
  }

  /**
   * A server step after the weighted mean (FedOpt, FedAvgM): the mean goes to a scratch buffer, `step` writes the
   * next global into `out` (the buffer of a replaced global).
   */
  protected aggregateWithServerStep(global: NamedTensors, step: (mean: NamedTensors, out: Float32Array) => NamedTensors): FitAggregation {
    const sum = this.aggregator.weightedMean(global, 'scratch');
    const out = this.aggregator.globalBuffer(global);
    return fitAggregation(sum, () => step(sum.mean(), out));
  }

  /** No evaluation when fraction_evaluate is 0 or fewer than max(1, min_evaluate_clients) sites are connected. */
  configureEvaluate(round: number, clients: ClientSample): EvaluateInstruction[] {
    const o = this.options;
    const need = Math.max(1, o.min_evaluate_clients);
    if (o.fraction_evaluate === 0 || clients.available.length < need) return [];
    const k = sampleSize(clients.available.length, o.fraction_evaluate, need);
    return sampleSites(clients.available, k, hashSeed(o.seed, 'evaluate', round)).map((site) => ({ site, ins: {} }));
  }

  aggregateEvaluate(_round: number, results: readonly EvaluateRes[]): { metrics: Record<string, number> } {
    return { metrics: weightedMetrics(results) };
  }

  /** No server-side data: the sites evaluate. */
  evaluate(): undefined {
    return undefined;
  }

  saveState(): StrategyState {
    return { scalars: {}, tensors: new Map() };
  }

  loadState(_state: StrategyState): void {}
}
