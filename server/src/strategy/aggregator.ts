// The Aggregator: everything about update buffers that a strategy should not have to see. Where uploads are
// received (fold-arena blocks for strategies that stream, plain pooled buffers for those that keep every update),
// the streaming WeightedSum, how long an update is held (its `release`), and which buffer a new global is written
// into (the one of the global the coordinator has replaced, so a round pays no fresh 16 MB of page faults).
import type { WireDtype } from '@fedsam/shared/transfer/messages';
import { BufferPool } from '../bufferPool.ts';
import { valueCount, type NamedTensors } from './aggregate.ts';
import { foldArena, type FoldArena } from './foldArena.ts';
import type { FitRes } from './strategy.ts';
import { touchedF32, WeightedSum } from './weightedSum.ts';

/**
 * 'streamed': updates are folded into a running sum as they arrive (memory O(model) whatever the number of sites).
 * 'kept': every update of a round is held until its end (median, trimmed mean: O(K x model)).
 */
export type UpdateHolding = 'streamed' | 'kept';

/** A round's updates folded into a weighted mean as they arrive. */
export interface UpdateSum {
  add(update: FitRes): void;
  readonly count: number;
  readonly totalWeight: number;
  /** The mean (views of one buffer). Once. */
  mean(): NamedTensors;
  /** Drop the round: release what is held. */
  abandon(): void;
}

/** A round's updates, all held until reduce(). */
export interface KeptUpdates {
  add(update: FitRes): void;
  readonly count: number;
  readonly totalWeight: number;
  /** Apply `f` to every update's weights, then release them. Once. */
  reduce<T>(f: (updates: NamedTensors[]) => T): T;
  abandon(): void;
}

/**
 * The buffers each new global is written into: the one the coordinator has given back (recycle()) is reused. At
 * most two exist: the current global and the one being written.
 */
class GlobalBuffers {
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

export class Aggregator {
  private readonly arena: FoldArena | undefined;
  private readonly pool: BufferPool<Uint8Array> | undefined;
  private readonly globals = new GlobalBuffers();
  /** A mean only read to compute the global (FedOpt, FedAvgM): one buffer serves every round. */
  private scratch: Float32Array | undefined;
  /** The upload finite check in WebAssembly over arena receive buffers (~8x the decoder's JS loop, used otherwise). */
  readonly scanFinite: ((payload: Uint8Array, at: number, count: number, dtype: WireDtype) => number) | undefined;

  constructor(readonly holding: UpdateHolding) {
    // Streamed updates are read where they arrive, in the fold arena (FedAvg's kernel needs them there); kept ones
    // get ordinary buffers, because the arena never shrinks and K held updates would stay reserved after the round.
    if (holding === 'streamed') {
      const arena = (this.arena = foldArena());
      this.scanFinite = (p, at, count, dtype) => arena.firstNonFinite(p, at, count, dtype);
    } else {
      this.pool = new BufferPool<Uint8Array>((n) => new Uint8Array(n), 2);
    }
  }

  /** A buffer to receive an upload of `bytes` into; back with giveReceiveBuffer (the aggregation does it for accepted updates). */
  takeReceiveBuffer(bytes: number): Uint8Array {
    return this.arena ? this.arena.bytes(bytes) : this.pool!.take(bytes);
  }

  giveReceiveBuffer(b: Uint8Array): void {
    if (this.arena) this.arena.give(b);
    else this.pool!.give(b);
  }

  /**
   * A weighted mean (FitRes.weight: the weighting policy's, weighting.ts) of the round's updates, folded in as they arrive. `into`:
   * 'global' writes the mean into the next global's buffer; 'scratch' into a buffer reused every round, for a mean
   * that is only read to compute the global.
   */
  weightedMean(layout: NamedTensors, into: 'global' | 'scratch'): UpdateSum {
    let out: Float32Array;
    if (into === 'global') out = this.globals.take(layout);
    else {
      const size = valueCount(layout);
      if (this.scratch?.length !== size) this.scratch = touchedF32(size);
      out = this.scratch;
    }
    const sum = new WeightedSum(layout, out, this.arena);
    return {
      add: (u) => sum.add(u.weights, u.weight, u.release),
      get count() {
        return sum.count;
      },
      get totalWeight() {
        return sum.totalWeight;
      },
      mean: () => sum.mean(),
      abandon: () => sum.discard(),
    };
  }

  /** Hold every update of the round (for reductions that need all of them at once). */
  keep(): KeptUpdates {
    const kept: NamedTensors[] = [];
    const releases: Array<() => void> = [];
    let total = 0;
    const releaseAll = () => {
      for (const r of releases.splice(0)) r();
    };
    return {
      add: (u) => {
        kept.push(u.weights);
        if (u.release) releases.push(u.release);
        total += u.weight;
      },
      get count() {
        return kept.length;
      },
      get totalWeight() {
        return total;
      },
      reduce: (f) => {
        try {
          return f(kept);
        } finally {
          releaseAll();
        }
      },
      abandon: () => {
        kept.length = 0;
        releaseAll();
      },
    };
  }

  /** A buffer (layout-sized) to write the next global into. */
  globalBuffer(layout: NamedTensors): Float32Array {
    return this.globals.take(layout);
  }

  /**
   * The coordinator no longer reads `global` (an earlier result it has replaced): a later global may be written
   * into its buffer.
   */
  recycle(global: NamedTensors): void {
    this.globals.recycle(global);
  }
}
