// SCAFFOLD (Karimireddy et al. 2020), none of Flower's built-ins: FedAvg on the server (server lr 1); each site
// corrects its local steps for client drift with control variates it keeps and derives itself from the global
// model's moves (client/src/engine/driftControl.ts), so no tensor beyond FedAvg's travels. The FitTask says so.
import { SCAFFOLD_PARAM, type WireFitConfig } from '@fedsam/shared/transfer/messages';
import type { StrategyName } from './config.ts';
import { FedAvg } from './fedAvg.ts';

export class Scaffold extends FedAvg {
  override readonly name: StrategyName = 'scaffold';

  protected override fitConfig(round: number, site: string): WireFitConfig {
    const c = super.fitConfig(round, site);
    return { ...c, params: { ...c.params, [SCAFFOLD_PARAM]: 1 } };
  }
}
