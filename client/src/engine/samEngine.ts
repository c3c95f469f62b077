// The SAM implementation of the site daemon's LocalEngine: owns the model, the embedding cache and the site's
// train/validation split; fit() = load the global decoder, train locally, return the new decoder weights.
import * as tf from '@tensorflow/tfjs';
import type { HostTensor } from '@fedsam/shared/safetensors';
import type { LoadedModel } from '@fedsam/shared/model/presets';
import type { LocalEngine, FitConfig, FitResult, EvaluateResult, FitProgress } from './localEngine.ts';
import type { EmbeddingCache } from './cache.ts';
import { trainDecoder, evaluateItems, startDataParallel, usesDataParallel, type EngineItem } from './trainer.ts';
import type { DataParallel } from './dataParallel.ts';

/** Copy the model's mask-decoder weights to host arrays (what travels). */
export function decoderToHost(loaded: LoadedModel): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const name of loaded.model.decoderParameterNames()) {
    const t = loaded.model.weights.get(name)!;
    out.set(name, { dtype: 'float32', shape: [...t.shape], data: Float32Array.from(t.dataSync() as Float32Array) });
  }
  return out;
}

/** Replace the model's mask-decoder weights by host arrays; names and shapes must match exactly. */
export function setDecoderFromHost(loaded: LoadedModel, weights: Map<string, HostTensor>): void {
  const names = loaded.model.decoderParameterNames();
  const missing = names.filter((n) => !weights.has(n));
  if (missing.length) throw new Error(`decoder weights lack ${missing.length} tensors (first: ${missing[0]})`);
  for (const n of names) {
    const cur = loaded.model.weights.get(n)!;
    const w = weights.get(n)!;
    if (w.shape.join() !== cur.shape.join()) throw new Error(`decoder tensor ${n} has shape [${w.shape}], the model has [${cur.shape}]`);
    loaded.model.weights.set(n, tf.tensor(w.data as Float32Array, w.shape, 'float32'));
    cur.dispose();
  }
}

export class SamEngine implements LocalEngine {
  readonly baseModelHash: string;
  constructor(readonly loaded: LoadedModel, readonly cache: EmbeddingCache, readonly train: EngineItem[], readonly val: EngineItem[],
    private readonly opts: { quiet?: boolean; dataParallel?: boolean; log?: (event: string, fields: Record<string, unknown>) => void; onProgress?: (p: FitProgress) => void;
      /** Each validation prediction (full-size binary mask) of an evaluation, e.g. for the site's own overlays. */
      onPrediction?: (item: EngineItem, mask: Uint8Array) => void | Promise<void> } = {}) {
    this.baseModelHash = loaded.baseModelHash;
  }

  private dp: Promise<DataParallel> | undefined;

  /** Stop the data-parallel worker, if one was started. */
  async close(): Promise<void> {
    const dp = this.dp;
    this.dp = undefined;
    if (dp) await (await dp).close();
  }

  decoderNames(): Map<string, number[]> {
    return new Map(this.loaded.model.decoderParameterNames().map((n) => [n, [...this.loaded.model.weights.get(n)!.shape]]));
  }

  async fit(global: Map<string, HostTensor>, cfg: FitConfig): Promise<FitResult> {
    setDecoderFromHost(this.loaded, global);
    const t0 = performance.now();
    // One data-parallel worker for all rounds (starting one loads a second copy of the prompt encoder and decoder).
    const wantDp = usesDataParallel(this.loaded, { dataParallel: this.opts.dataParallel, batchSize: cfg.batchSize, proximalMu: cfg.proximalMu });
    const history = await trainDecoder(this.loaded, this.cache, this.train, [], {
      epochs: cfg.epochs, lr: cfg.lr, batchSize: cfg.batchSize, seed: cfg.seed * 1000 + cfg.round, proximalMu: cfg.proximalMu, quiet: this.opts.quiet,
      dataParallel: wantDp ? await (this.dp ??= startDataParallel(this.loaded).catch((e) => { this.dp = undefined; throw e; })) : false, points: cfg.points,
      onStep: this.opts.onProgress ? (p) => this.opts.onProgress!({ round: cfg.round, ...p }) : undefined,
    });
    const last = history[history.length - 1];
    this.opts.log?.('local_fit_done', { round: cfg.round, loss: last?.trainLoss, seconds: (performance.now() - t0) / 1000 });
    return {
      weights: decoderToHost(this.loaded),
      numExamples: this.train.length,
      metrics: { train_loss: last?.trainLoss ?? NaN, train_soft_dice: last?.trainDice ?? NaN, fit_seconds: (performance.now() - t0) / 1000 },
    };
  }

  async evaluate(global: Map<string, HostTensor>): Promise<EvaluateResult> {
    setDecoderFromHost(this.loaded, global);
    const items = this.val.length ? this.val : this.train;
    const m = await evaluateItems(this.loaded, this.cache, items, { onPrediction: this.opts.onPrediction });
    return { numExamples: items.length, metrics: { dice: m.dice, iou: m.iou, dice256: m.dice256, iou256: m.iou256, box_dice: m.boxDice } };
  }
}
