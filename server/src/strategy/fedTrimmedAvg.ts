// FedTrimmedAvg (Yin et al. 2018), as Flower's FedTrimmedAvg: per coordinate, drop the beta fraction of the
// values at each end and average the rest, unweighted. Keeps all K updates (like FedMedian).
import { trimmedMean, type NamedTensors } from './aggregate.ts';
import type { StrategyConfigOf, StrategyName } from './config.ts';
import { FedAvg, fitAggregation } from './fedAvg.ts';
import type { FitAggregation, StrategyOptions } from './strategy.ts';

export class FedTrimmedAvg extends FedAvg {
  override readonly name: StrategyName = 'trimmed_mean';

  constructor(private readonly cfg: Omit<StrategyConfigOf<'trimmed_mean'>, 'name'>, options?: StrategyOptions) {
    super(options, 'kept');
  }

  override aggregateFit(_round: number, _global: NamedTensors): FitAggregation {
    const kept = this.aggregator.keep();
    return fitAggregation(kept, () => kept.reduce((updates) => trimmedMean(updates, this.cfg.beta)));
  }
}
