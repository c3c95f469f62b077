// FedYogi (Reddi et al. 2020), as Flower's FedYogi: FedOpt with Yogi's additive second moment, no bias correction.
import type { StrategyConfigOf, StrategyName } from './config.ts';
import { FedOpt } from './fedOpt.ts';
import type { StrategyOptions } from './strategy.ts';

export class FedYogi extends FedOpt {
  override readonly name: StrategyName = 'fedyogi';

  constructor(cfg: Omit<StrategyConfigOf<'fedyogi'>, 'name'>, options?: StrategyOptions) {
    super('yogi', cfg, options);
  }
}
