// Strategy settings as the server config (YAML `strategy:`) and `--strategy` spell them: one schema, one source of
// defaults (Flower's, where Flower has the strategy).
import { z } from 'zod';

export const StrategyConfigSchema = z.discriminatedUnion('name', [
  z.object({ name: z.literal('fedavg') }).strict(),
  z.object({ name: z.literal('fedprox'), proximal_mu: z.number().nonnegative().default(0.01) }).strict(),
  z.object({ name: z.literal('scaffold') }).strict(),
  z.object({
    name: z.literal('fedadam'),
    eta: z.number().positive().default(1e-1),
    beta_1: z.number().min(0).lt(1).default(0.9),
    beta_2: z.number().min(0).lt(1).default(0.99),
    tau: z.number().positive().default(1e-9),
  }).strict(),
  z.object({
    name: z.literal('fedyogi'),
    eta: z.number().positive().default(1e-2),
    beta_1: z.number().min(0).lt(1).default(0.9),
    beta_2: z.number().min(0).lt(1).default(0.99),
    tau: z.number().positive().default(1e-3),
  }).strict(),
  z.object({
    name: z.literal('fedavgm'),
    server_learning_rate: z.number().positive().default(1.0),
    server_momentum: z.number().min(0).lt(1).default(0.0),
  }).strict(),
  z.object({ name: z.literal('median') }).strict(),
  z.object({ name: z.literal('trimmed_mean'), beta: z.number().min(0).lt(0.5).default(0.2) }).strict(),
]);
export type StrategyConfig = z.output<typeof StrategyConfigSchema>;
export type StrategyConfigInput = z.input<typeof StrategyConfigSchema>;
export type StrategyName = StrategyConfig['name'];
export const STRATEGY_NAMES: StrategyName[] = StrategyConfigSchema.options.map((o) => o.shape.name.value);
export type StrategyConfigOf<N extends StrategyName> = Extract<StrategyConfig, { name: N }>;
