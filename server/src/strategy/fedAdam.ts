// FedAdam (Reddi et al. 2020), as Flower's FedAdam: FedOpt with Adam's second moment and bias correction.
import type { StrategyConfigOf, StrategyName } from './config.ts';
import { FedOpt } from './fedOpt.ts';
import type { StrategyOptions } from './strategy.ts';

export class FedAdam extends FedOpt {
  override readonly name: StrategyName = 'fedadam';

  constructor(cfg: Omit<StrategyConfigOf<'fedadam'>, 'name' | 'eta'> & { eta: number }, options?: StrategyOptions) {
    super('adam', cfg, options);
  }
}
