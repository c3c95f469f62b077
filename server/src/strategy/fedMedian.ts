// FedMedian (Yin et al. 2018), as Flower's FedMedian: the coordinate-wise median of the updates, unweighted.
// It needs all K updates at once: the aggregator keeps K float32 copies (O(K x model), 16 MB per sam-vit-base
// decoder update).
import { coordinateMedian, type NamedTensors } from './aggregate.ts';
import type { StrategyName } from './config.ts';
import { FedAvg, fitAggregation } from './fedAvg.ts';
import type { FitAggregation, StrategyOptions } from './strategy.ts';

export class FedMedian extends FedAvg {
  override readonly name: StrategyName = 'median';

  constructor(options?: StrategyOptions) {
    super(options, 'kept');
  }

  override aggregateFit(_round: number, _global: NamedTensors): FitAggregation {
    const kept = this.aggregator.keep();
    return fitAggregation(kept, () => kept.reduce(coordinateMedian));
  }
}
