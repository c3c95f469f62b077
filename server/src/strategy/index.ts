// Strategies: a small Flower-like interface over the pure math in math.ts. The round driver (coordinator.ts) owns
// I/O; a strategy only says what clients get (fit params) and turns validated updates into the next global model.
import { z } from 'zod';
import type { HostTensor } from '@fedsam/shared/safetensors';
import {
  coordinateMedian, fedOptStep, touchedF32, trimmedMean, valueCount, WeightedSum,
  type FedOptMoments, type NamedTensors,
} from './math.ts';

export * from './math.ts';

export const StrategyConfigSchema = z.discriminatedUnion('name', [
  z.object({ name: z.literal('fedavg') }).strict(),
  z.object({ name: z.literal('fedprox'), proximal_mu: z.number().nonnegative().default(0.01) }).strict(),
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
  z.object({ name: z.literal('median') }).strict(),
  z.object({ name: z.literal('trimmed_mean'), beta: z.number().min(0).lt(0.5).default(0.2) }).strict(),
]);
export type StrategyConfig = z.output<typeof StrategyConfigSchema>;
export type StrategyConfigInput = z.input<typeof StrategyConfigSchema>;
export type StrategyName = StrategyConfig['name'];
export const STRATEGY_NAMES: StrategyName[] = ['fedavg', 'fedprox', 'fedadam', 'fedyogi', 'median', 'trimmed_mean'];

export interface ClientUpdate {
  site: string;
  weights: NamedTensors;
  numExamples: number;
  /** Called once the aggregator no longer reads `weights` (their buffer can be reused). */
  release?: () => void;
}

/** Aggregation of one round: updates are folded in as they arrive (validated beforehand). */
export interface RoundAggregator {
  /** Fold in one update. The aggregator may keep its arrays until it calls the update's `release`. */
  add(update: ClientUpdate): void;
  readonly count: number;
  readonly totalExamples: number;
  /** The new global model. Called once. */
  finish(): NamedTensors;
  /** The round is dropped (retried or stopped) without finish(): release every update still held. */
  abandon(): void;
}

/** Persistable strategy state (FedOpt moments). */
export interface StrategyState {
  scalars: Record<string, number>;
  tensors: Map<string, HostTensor>;
}

export interface Strategy {
  readonly name: StrategyName;
  /** Memory note: true when the aggregator keeps every update of the round (O(K x model)). */
  readonly keepsAllUpdates: boolean;
  /** Per-round parameters sent with each FitTask. */
  fitParams(round: number): { proximalMu: number; params: Record<string, number> };
  beginRound(round: number, global: NamedTensors): RoundAggregator;
  /**
   * The coordinator no longer reads `global` (an earlier finish() result it has replaced): a strategy may write
   * a later result into its buffer.
   */
  recycle?(global: NamedTensors): void;
  saveState(): StrategyState;
  loadState(state: StrategyState): void;
}

/** FedAvg (and FedProx, whose server side is FedAvg): streaming float64 weighted sum. */
class FedAvgStrategy implements Strategy {
  readonly keepsAllUpdates = false;
  private readonly outputs = new OutputBuffers();
  constructor(readonly name: 'fedavg' | 'fedprox', private readonly mu = 0) {}

  fitParams(): { proximalMu: number; params: Record<string, number> } {
    return { proximalMu: this.mu, params: this.name === 'fedprox' ? { proximal_mu: this.mu } : {} };
  }

  beginRound(_round: number, global: NamedTensors): RoundAggregator {
    return streamingMean(global, this.outputs.take(global), (mean) => mean);
  }

  recycle(global: NamedTensors): void {
    this.outputs.recycle(global);
  }

  saveState(): StrategyState {
    return { scalars: {}, tensors: new Map() };
  }

  loadState(): void {}
}

/**
 * The buffers FedAvg (and FedOpt) write each new global into: the one the coordinator has given back (recycle()) is reused,
 * so a round pays no fresh 16 MB of page faults. At most two exist: the current global and the one being written.
 */
class OutputBuffers {
  private readonly mine = new WeakMap<ArrayBufferLike, Float32Array>();
  private spare: Float32Array | undefined;

  take(layout: NamedTensors): Float32Array {
    const size = valueCount(layout);
    const b = this.spare?.length === size ? this.spare : touchedF32(size);
    this.spare = undefined;
    this.mine.set(b.buffer, b);
    return b;
  }

  recycle(global: NamedTensors): void {
    const first = global.values().next().value;
    const b = first && this.mine.get(first.data.buffer);
    if (b) this.spare = b;
  }
}

function streamingMean(global: NamedTensors, out: Float32Array | undefined, then: (mean: NamedTensors) => NamedTensors): RoundAggregator {
  const sum = new WeightedSum(global, out);
  return {
    add: (u) => sum.add(u.weights, u.numExamples, u.release),
    get count() {
      return sum.count;
    },
    get totalExamples() {
      return sum.totalWeight;
    },
    finish: () => then(sum.mean()),
    abandon: () => sum.discard(),
  };
}

/** FedAdam / FedYogi: FedAvg of the updates, then a server optimizer step on the pseudo-gradient. */
class FedOptStrategy implements Strategy {
  readonly keepsAllUpdates = false;
  private moments: FedOptMoments | undefined;
  /** The round's FedAvg mean: read by the optimizer step only, so one buffer serves every round. */
  private meanOut: Float32Array | undefined;
  private readonly outputs = new OutputBuffers();
  readonly name: 'fedadam' | 'fedyogi';

  constructor(private readonly cfg: Extract<StrategyConfig, { name: 'fedadam' | 'fedyogi' }>) {
    this.name = cfg.name;
  }

  fitParams(): { proximalMu: number; params: Record<string, number> } {
    return { proximalMu: 0, params: {} };
  }

  beginRound(round: number, global: NamedTensors): RoundAggregator {
    // The coordinator replaces the global after finish() and never writes into it: no copy needed.
    const size = valueCount(global);
    if (this.meanOut?.length !== size) this.meanOut = touchedF32(size);
    const out = this.outputs.take(global);
    return streamingMean(global, this.meanOut, (mean) => {
      const { weights, moments } = fedOptStep(this.name === 'fedadam' ? 'adam' : 'yogi', global, mean, this.moments, this.cfg, round, { inPlaceMoments: true, out });
      this.moments = moments;
      return weights;
    });
  }

  recycle(global: NamedTensors): void {
    this.outputs.recycle(global);
  }

  /** The live moments (valid until the next round finishes; the server writes them right away). */
  saveState(): StrategyState {
    const tensors = new Map<string, HostTensor>();
    if (this.moments) {
      for (const [n, t] of this.moments.m) tensors.set(`m.${n}`, t);
      for (const [n, t] of this.moments.v) tensors.set(`v.${n}`, t);
    }
    return { scalars: { has_moments: this.moments ? 1 : 0 }, tensors };
  }

  loadState(state: StrategyState): void {
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

/**
 * Median / trimmed mean: these need all K updates of the round at once, so the aggregator keeps K float32 copies in
 * memory (O(K x model): 16 MB per sam-vit-base decoder update).
 */
class RobustStrategy implements Strategy {
  readonly keepsAllUpdates = true;
  readonly name: 'median' | 'trimmed_mean';
  constructor(private readonly cfg: Extract<StrategyConfig, { name: 'median' | 'trimmed_mean' }>) {
    this.name = cfg.name;
  }

  fitParams(): { proximalMu: number; params: Record<string, number> } {
    return { proximalMu: 0, params: {} };
  }

  beginRound(): RoundAggregator {
    const kept: NamedTensors[] = [];
    const releases: Array<() => void> = [];
    let total = 0;
    return {
      add: (u) => {
        kept.push(u.weights);
        if (u.release) releases.push(u.release);
        total += u.numExamples;
      },
      get count() {
        return kept.length;
      },
      get totalExamples() {
        return total;
      },
      finish: () => {
        const out = this.cfg.name === 'median' ? coordinateMedian(kept) : trimmedMean(kept, this.cfg.beta);
        for (const r of releases.splice(0)) r();
        return out;
      },
      abandon: () => {
        kept.length = 0;
        for (const r of releases.splice(0)) r();
      },
    };
  }

  saveState(): StrategyState {
    return { scalars: {}, tensors: new Map() };
  }

  loadState(): void {}
}

export function createStrategy(cfg: StrategyConfigInput | StrategyConfig): Strategy {
  const c = StrategyConfigSchema.parse(cfg);
  switch (c.name) {
    case 'fedavg':
      return new FedAvgStrategy('fedavg');
    case 'fedprox':
      return new FedAvgStrategy('fedprox', c.proximal_mu);
    case 'fedadam':
    case 'fedyogi':
      return new FedOptStrategy(c);
    case 'median':
    case 'trimmed_mean':
      return new RobustStrategy(c);
  }
}
