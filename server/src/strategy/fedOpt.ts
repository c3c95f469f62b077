// FedOpt (Reddi et al. 2020), as Flower's FedOpt: FedAvg of the updates, then a server optimizer step on the
// pseudo-gradient (aggregated - current). FedAdam and FedYogi differ only in the step (aggregate.ts fedOptStep).
import { fedOptStep, type FedOptMoments, type FedOptParams, type NamedTensors } from './aggregate.ts';
import { FedAvg } from './fedAvg.ts';
import { packStateTensors, unpackStateTensors, type FitAggregation, type StrategyOptions, type StrategyState } from './strategy.ts';

export abstract class FedOpt extends FedAvg {
  private moments: FedOptMoments | undefined;

  constructor(private readonly kind: 'adam' | 'yogi', private readonly params: FedOptParams, options?: StrategyOptions) {
    super(options);
  }

  override aggregateFit(round: number, global: NamedTensors): FitAggregation {
    // The coordinator replaces the global after finish() and never writes into it: no copy of `global` needed.
    return this.aggregateWithServerStep(global, (mean, out) => {
      const { weights, moments } = fedOptStep(this.kind, global, mean, this.moments, this.params, round, { inPlaceMoments: true, out });
      this.moments = moments;
      return weights;
    });
  }

  /** The live moments (valid until the next round finishes; the server writes them right away). */
  override saveState(): StrategyState {
    return { scalars: { has_moments: this.moments ? 1 : 0 }, tensors: packStateTensors({ m: this.moments?.m, v: this.moments?.v }) };
  }

  override loadState(state: StrategyState): void {
    this.moments = state.scalars.has_moments ? { m: unpackStateTensors(state, 'm'), v: unpackStateTensors(state, 'v') } : undefined;
  }
}
