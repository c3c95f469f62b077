// Strategy settings as the server config (YAML `strategy:`) and `--strategy` spell them: one schema, one source of
// defaults (Flower's, where Flower has the strategy, except FedAdam's eta: Flower's 0.1 moves every weight of a
// pretrained decoder by about 0.1 in the first rounds, which took the built-in model's Dice to 0 (README, "Server-side
// optimizers"); its default is the sites' own learning rate, fedAdamEta below).
import { z } from 'zod';

export const StrategyConfigSchema = z.discriminatedUnion('name', [
  z.object({ name: z.literal('fedavg') }).strict(),
  z.object({ name: z.literal('fedprox'), proximal_mu: z.number().nonnegative().default(0.01) }).strict(),
  z.object({ name: z.literal('scaffold') }).strict(),
  z.object({
    name: z.literal('fedadam'),
    /** Server learning rate; default: the sites' learning rate (fit.lr), see fedAdamEta. */
    eta: z.number().positive().optional(),
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

/** Flower's FedAdam default server learning rate (flwr.server.strategy.FedAdam eta), for parity runs against Flower. */
export const FLOWER_FEDADAM_ETA = 0.1;

/**
 * FedAdam's server learning rate: the configured one, else the sites' own learning rate. With tau ≈ 0 FedAdam's
 * first steps move each weight by about eta whatever the update's size, and one local Adam step moves it by about the
 * local lr: eta = lr keeps a server step the size of a local one (measured on the built-in model: 10x that swings by
 * 0.05 between rounds, 100x, Flower's 0.1, ends at Dice 0).
 */
export function fedAdamEta(eta: number | undefined, fitLr: number | null | undefined): number {
  if (eta !== undefined) return eta;
  if (fitLr == null) throw new RangeError('fedadam: set strategy.eta, or fit.lr to derive it from (eta defaults to the sites\' learning rate)');
  return fitLr;
}
