// FedOpt (Reddi et al. 2020), as Flower's FedOpt: FedAvg of the updates, then a server optimizer step on the
// pseudo-gradient (aggregated - current). FedAdam and FedYogi differ only in the step (aggregate.ts fedOptStep).
import type { HostTensor } from '@fedsam/shared/safetensors';
import { fedOptStep, type FedOptMoments, type FedOptParams, type NamedTensors } from './aggregate.ts';
import { FedAvg } from './fedAvg.ts';
import type { FitAggregation, StrategyOptions, StrategyState } from './strategy.ts';

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
    const tensors = new Map<string, HostTensor>();
    if (this.moments) {
      for (const [n, t] of this.moments.m) tensors.set(`m.${n}`, t);
      for (const [n, t] of this.moments.v) tensors.set(`v.${n}`, t);
    }
    return { scalars: { has_moments: this.moments ? 1 : 0 }, tensors };
  }

  override loadState(state: StrategyState): void {
    if (!state.scalars.has_moments) {
      this.moments = undefined;
      return;
    }
    const m: NamedTensors = new Map();
    const v: NamedTensors = new Map();
    for (const [n, t] of state.tensors) {
      const own = { dtype: t.dtype, shape: [...t.shape], data: (t.data as Float32Array).slice() };
      if (n.startsWith('m.')) m.set(n.slice(2), own);
      else if (n.startsWith('v.')) v.set(n.slice(2), own);
    }
    this.moments = { m, v };
  }
}
