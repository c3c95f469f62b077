// FedAvgM (Hsu et al. 2019), as Flower's FedAvgM: FedAvg, then an SGD step with server learning rate and momentum
// on the pseudo-gradient (aggregate.ts fedAvgMStep). With the defaults (learning rate 1, momentum 0) it is FedAvg.
import { fedAvgMStep, type NamedTensors } from './aggregate.ts';
import type { StrategyConfigOf, StrategyName } from './config.ts';
import { FedAvg } from './fedAvg.ts';
import { packStateTensors, unpackStateTensors, type FitAggregation, type StrategyOptions, type StrategyState } from './strategy.ts';

export class FedAvgM extends FedAvg {
  override readonly name: StrategyName = 'fedavgm';
  private momentum: NamedTensors | undefined;
  /** Flower's server_opt: a step is taken unless it would give the mean back unchanged. */
  private readonly serverOpt: boolean;

  constructor(private readonly cfg: Omit<StrategyConfigOf<'fedavgm'>, 'name'>, options?: StrategyOptions) {
    super(options);
    this.serverOpt = cfg.server_momentum !== 0 || cfg.server_learning_rate !== 1;
  }

  override aggregateFit(round: number, global: NamedTensors): FitAggregation {
    if (!this.serverOpt) return super.aggregateFit(round, global);
    return this.aggregateWithServerStep(global, (mean, out) => {
      const r = fedAvgMStep(global, mean, this.momentum, this.cfg, { out });
      this.momentum = r.momentum;
      return r.weights;
    });
  }

  override saveState(): StrategyState {
    return { scalars: { has_momentum: this.momentum ? 1 : 0 }, tensors: packStateTensors({ momentum: this.momentum }) };
  }

  override loadState(state: StrategyState): void {
    this.momentum = state.scalars.has_momentum ? unpackStateTensors(state, 'momentum') : undefined;
  }
}
