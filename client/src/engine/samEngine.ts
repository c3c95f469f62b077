// The SAM implementation of the site daemon's LocalEngine: owns the model, the embedding cache and the site's
// train/validation split; fit() = load the global decoder, train locally, return the new decoder weights (and, with
// Ditto, train the site's personal decoder after that: personalModel.ts).
import type { HostTensor } from '@fedsam/shared/safetensors';
import type { LoadedModel } from '@fedsam/shared/model/presets';
import { boxJitterOf, type LocalEngine, type FitConfig, type FitResult, type EvaluateResult, type FitProgress } from './localEngine.ts';
import type { EmbeddingCache } from './cache.ts';
import { trainDecoder, evaluateItems, startDataParallel, usesDataParallel, type EngineItem } from './trainer.ts';
import type { DataParallel } from './dataParallel.ts';
import { adamDispose, adamInit, type AdamState } from '@fedsam/shared/train/adam';
import { SiteOptimizerState, optimizerFingerprint } from './optimizerState.ts';
import { SiteDriftControl } from './driftControl.ts';
import { decoderToHost, setDecoderFromHost } from './decoderWeights.ts';
import { SitePersonalModel } from './personalModel.ts';
import { saveModelFolder } from '../modelFolder.ts';

export class SamEngine implements LocalEngine {
  readonly baseModelHash: string;
  constructor(readonly loaded: LoadedModel, readonly cache: EmbeddingCache, readonly train: EngineItem[], readonly val: EngineItem[],
    private readonly opts: { quiet?: boolean; dataParallel?: boolean; log?: (event: string, fields: Record<string, unknown>) => void; onProgress?: (p: FitProgress) => void;
      /** Each validation prediction (full-size binary mask) of an evaluation, e.g. for the site's own overlays. */
      onPrediction?: (item: EngineItem, mask: Uint8Array) => void | Promise<void>;
      /** Folder of the site's own state (its kept optimizer state); none: kept in memory only. */
      stateDir?: string } = {}) {
    this.baseModelHash = loaded.baseModelHash;
    const fingerprint = optimizerFingerprint(loaded.baseModelHash, this.decoderNames());
    this.optimizerFile = new SiteOptimizerState(opts.stateDir, fingerprint);
    this.drift = new SiteDriftControl(opts.stateDir, fingerprint, opts.log);
    this.personal = new SitePersonalModel(opts.stateDir, fingerprint, opts.log);
  }

  /** Ditto's personal decoder of this site (when the server asks for one). */
  private readonly personal: SitePersonalModel;
  private personalCleared = false;

  /** SCAFFOLD's control variates of this site (used when the server's strategy asks for them). */
  private readonly drift: SiteDriftControl;
  private driftCleared = false;

  private readonly optimizerFile: SiteOptimizerState;
  /** The Adam state kept across rounds (fit.optimizer_state: keep); loaded from the state folder on first use. */
  private optimizer: AdamState | undefined;
  private optimizerLoaded = false;

  /** The kept Adam state, from memory or (a restarted daemon) from the state folder; a new one when there is none. */
  private async keptOptimizer(): Promise<AdamState> {
    if (!this.optimizer && !this.optimizerLoaded) {
      this.optimizerLoaded = true;
      const r = await this.optimizerFile.load();
      if ('state' in r) {
        this.optimizer = r.state;
        this.opts.log?.('optimizer_state_resumed', { file: this.optimizerFile.file, round: r.round, steps: Math.max(0, ...r.state.step.values()) });
      } else if (r.discarded) {
        this.opts.log?.('optimizer_state_discarded', { file: this.optimizerFile.file, reason: r.discarded, detail: r.detail });
        await this.optimizerFile.clear();
      }
    }
    return (this.optimizer ??= adamInit());
  }

  /** Forget the kept optimizer (memory and file). */
  private async dropOptimizer(): Promise<void> {
    this.optimizerLoaded = true;
    if (this.optimizer) adamDispose(this.optimizer);
    this.optimizer = undefined;
    await this.optimizerFile.clear();
  }

  private dp: Promise<DataParallel> | undefined;

  /** Stop the data-parallel worker, if one was started. */
  async close(): Promise<void> {
    const dp = this.dp;
    this.dp = undefined;
    if (dp) await (await dp).close();
    if (this.optimizer) adamDispose(this.optimizer);
    this.optimizer = undefined;
    this.personal.dispose();
  }

  decoderNames(): Map<string, number[]> {
    return new Map(this.loaded.model.decoderParameterNames().map((n) => [n, [...this.loaded.model.weights.get(n)!.shape]]));
  }

  async fit(global: Map<string, HostTensor>, cfg: FitConfig): Promise<FitResult> {
    setDecoderFromHost(this.loaded, global);
    const t0 = performance.now();
    // One data-parallel worker for all rounds (starting one loads a second copy of the prompt encoder and decoder).
    const wantDp = usesDataParallel(this.loaded, { dataParallel: this.opts.dataParallel, batchSize: cfg.batchSize, proximalMu: cfg.proximalMu });
    const keep = cfg.optimizerState === 'keep';
    const adam = keep ? await this.keptOptimizer() : undefined;
    if (!keep && (this.optimizer || !this.optimizerLoaded)) await this.dropOptimizer();
    const correction = cfg.scaffold ? await this.drift.correctionFor(global, cfg.round) : undefined;
    if (!cfg.scaffold && !this.driftCleared) { this.driftCleared = true; await this.drift.clear(); }
    if (cfg.scaffold) this.driftCleared = false;
    const history = await trainDecoder(this.loaded, this.cache, this.train, [], {
      epochs: cfg.epochs, lr: cfg.lr, batchSize: cfg.batchSize, seed: cfg.seed * 1000 + cfg.round, proximalMu: cfg.proximalMu, quiet: this.opts.quiet,
      jitter: boxJitterOf(cfg),
      adam, warmupSteps: cfg.warmupSteps, driftCorrection: correction,
      dataParallel: wantDp ? await (this.dp ??= startDataParallel(this.loaded).catch((e) => { this.dp = undefined; throw e; })) : false, points: cfg.points,
      onStep: this.opts.onProgress ? (p) => this.opts.onProgress!({ round: cfg.round, ...p }) : undefined,
    }).catch((e) => {
      // a failed fit leaves a half-stepped optimizer: the next one resumes the last saved state instead
      if (adam) { adamDispose(adam); this.optimizer = undefined; this.optimizerLoaded = false; }
      throw e;
    });
    if (adam) await this.optimizerFile.save(adam, cfg.round);
    const last = history[history.length - 1];
    const weights = decoderToHost(this.loaded);
    if (cfg.scaffold) await this.drift.record(global, weights, history.reduce((s, e) => s + e.lrSum, 0), cfg.round, correction);
    const t1 = performance.now();
    if (cfg.ditto) {
      // the personal model is the site's own business: its failure must not cost the federation this round's update
      await this.personal.fit(this.loaded, this.cache, this.train, global, cfg, cfg.ditto.lambda)
        .catch((e) => this.opts.log?.('personal_fit_failed', { round: cfg.round, err: (e as Error).message }));
      this.personalCleared = false;
    } else if (!this.personalCleared) {
      this.personalCleared = true;
      if (await this.personal.current()) this.opts.log?.('personal_model_dropped', { file: this.personal.file, reason: 'the server no longer asks for Ditto' });
      await this.personal.clear();
    }
    this.opts.log?.('local_fit_done', { round: cfg.round, loss: last?.trainLoss, seconds: (performance.now() - t0) / 1000, ...(cfg.scaffold ? { scaffold_corrected: !!correction } : {}),
      ...(cfg.ditto ? { personal_seconds: (performance.now() - t1) / 1000 } : {}) });
    return {
      weights,
      numExamples: this.train.length,
      metrics: { train_loss: last?.trainLoss ?? NaN, train_soft_dice: last?.trainDice ?? NaN, fit_seconds: (performance.now() - t0) / 1000 },
    };
  }

  /** Write the site's Ditto personal model as a full HF SamModel folder (frozen encoders + its decoder); false: it has none. */
  async savePersonalModel(dir: string): Promise<boolean> {
    const personal = await this.personal.current();
    if (!personal) return false;
    setDecoderFromHost(this.loaded, personal);
    await saveModelFolder(dir, this.loaded);
    return true;
  }

  async evaluate(global: Map<string, HostTensor>): Promise<EvaluateResult> {
    setDecoderFromHost(this.loaded, global);
    const items = this.val.length ? this.val : this.train;
    const m = await evaluateItems(this.loaded, this.cache, items, { onPrediction: this.opts.onPrediction });
    const metrics: Record<string, number> = { dice: m.dice, iou: m.iou, dice256: m.dice256, iou256: m.iou256, box_dice: m.boxDice };
    const personal = await this.personal.current();
    if (personal) {
      setDecoderFromHost(this.loaded, personal);
      const p = await evaluateItems(this.loaded, this.cache, items);
      Object.assign(metrics, { personal_dice: p.dice, personal_iou: p.iou });
    }
    return { numExamples: items.length, metrics };
  }
}
