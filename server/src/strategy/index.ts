// Strategies by config name, and the public surface of the strategy folder.
import { StrategyConfigSchema, fedAdamEta, type StrategyConfig, type StrategyConfigInput } from './config.ts';
import { FedAdam } from './fedAdam.ts';
import { FedAvg } from './fedAvg.ts';
import { FedAvgM } from './fedAvgM.ts';
import { FedMedian } from './fedMedian.ts';
import { FedProx } from './fedProx.ts';
import { FedTrimmedAvg } from './fedTrimmedAvg.ts';
import { FedYogi } from './fedYogi.ts';
import { Scaffold } from './scaffold.ts';
import type { Strategy, StrategyOptions } from './strategy.ts';

export * from './config.ts';
export * from './strategy.ts';
export { AggregationError, type NamedTensors } from './aggregate.ts';
export { FedAvg, FedProx, FedAdam, FedYogi, FedAvgM, FedMedian, FedTrimmedAvg, Scaffold };

/** The strategy a config names; `options` (sampling, local training) default to the server config's defaults. */
export function createStrategy(cfg: StrategyConfigInput | StrategyConfig, options?: StrategyOptions): Strategy {
  const c = StrategyConfigSchema.parse(cfg);
  switch (c.name) {
    case 'fedavg':
      return new FedAvg(options);
    case 'fedprox':
      return new FedProx(c, options);
    case 'scaffold':
      return new Scaffold(options);
    case 'fedadam':
      return new FedAdam({ ...c, eta: fedAdamEta(c.eta, options?.fit?.lr) }, options);
    case 'fedyogi':
      return new FedYogi(c, options);
    case 'fedavgm':
      return new FedAvgM(c, options);
    case 'median':
      return new FedMedian(options);
    case 'trimmed_mean':
      return new FedTrimmedAvg(c, options);
  }
}
