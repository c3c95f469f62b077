// FedProx (Li et al. 2020), as Flower's FedProx: FedAvg on the server; each site adds the proximal term
// proximal_mu/2 ||w - w_global||^2 to its local loss (proximal_mu travels in the FitTask).
import type { WireFitConfig } from '@fedsam/shared/transfer/messages';
import type { StrategyConfigOf, StrategyName } from './config.ts';
import { FedAvg } from './fedAvg.ts';
import type { StrategyOptions } from './strategy.ts';

export class FedProx extends FedAvg {
  override readonly name: StrategyName = 'fedprox';

  constructor(private readonly cfg: Omit<StrategyConfigOf<'fedprox'>, 'name'>, options?: StrategyOptions) {
    super(options);
  }

  protected override fitConfig(round: number, site: string): WireFitConfig {
    const mu = this.cfg.proximal_mu;
    const c = super.fitConfig(round, site);
    return { ...c, proximal_mu: mu, params: { ...c.params, proximal_mu: mu } };
  }
}
