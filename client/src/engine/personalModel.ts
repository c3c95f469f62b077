// Ditto (Li et al. 2021, "Ditto: Fair and Robust Federated Learning Through Personalization"): besides its share in
// the global model, a site keeps a personal mask decoder v that never leaves it. Each round, after the global's local
// fit, the site trains v on its own data for the same epochs with λ/2·‖v − w‖² added to the loss, w being the global
// it received, and its own Adam kept across rounds. λ = 0 is training alone; a large λ pins v to the global.
// A site whose data the shared model serves badly (README, "Personal models") keeps what it learns alone and still
// borrows from the federation. v lives in memory and in <state_dir>/personal.safetensors (+ its Adam in
// personal-optimizer.safetensors), written atomically after each round, so a restarted daemon resumes it.
import type { HostTensor } from '@fedsam/shared/safetensors';
import type { LoadedModel } from '@fedsam/shared/model/presets';
import { adamDispose, adamInit, type AdamState } from '@fedsam/shared/train/adam';
import { join } from 'node:path';
import type { EmbeddingCache } from './cache.ts';
import { boxJitterOf, type FitConfig } from './localEngine.ts';
import { decoderToHost, setDecoderFromHost } from './decoderWeights.ts';
import { SiteOptimizerState } from './optimizerState.ts';
import { readSiteState, removeSiteState, writeSiteState } from './siteStateFile.ts';
import { trainDecoder, type EngineItem } from './trainer.ts';

export const PERSONAL_MODEL_FILE = 'personal.safetensors';
export const PERSONAL_OPTIMIZER_FILE = 'personal-optimizer.safetensors';
const FORMAT = 'fedsam-personal-1';
/** The personal pass draws other batches and box jitter than the global's pass of the same round. */
const SEED_OFFSET = 500;

type Log = (event: string, fields: Record<string, unknown>) => void;

export class SitePersonalModel {
  readonly file: string | undefined;
  private readonly optimizerFile: SiteOptimizerState;
  private weights: Map<string, HostTensor> | undefined;
  private adam: AdamState | undefined;
  private loaded = false;

  constructor(stateDir: string | undefined, private readonly fingerprint: string, private readonly log?: Log) {
    this.file = stateDir ? join(stateDir, PERSONAL_MODEL_FILE) : undefined;
    this.optimizerFile = new SiteOptimizerState(stateDir, fingerprint, PERSONAL_OPTIMIZER_FILE);
  }

  /** The personal decoder, from memory or (a restarted daemon) the state folder; undefined before Ditto's first round. */
  async current(): Promise<Map<string, HostTensor> | undefined> {
    if (this.loaded || !this.file) return this.weights;
    this.loaded = true;
    const r = await readSiteState(this.file, FORMAT, this.fingerprint);
    if ('tensors' in r) {
      this.weights = r.tensors;
      const o = await this.optimizerFile.load();
      if ('state' in o) this.adam = o.state;
      this.log?.('personal_model_resumed', { file: this.file, round: Number(r.metadata.round ?? 0), optimizer: 'state' in o ? 'resumed' : o.discarded ?? 'none' });
    } else if (r.discarded) {
      this.log?.('personal_model_discarded', { file: this.file, reason: r.discarded, detail: r.detail });
      await this.clear();
    }
    return this.weights;
  }

  /**
   * Ditto's personal update for one round: v ← v trained with λ/2·‖v − global‖² (v starts as the global in the first
   * round). Leaves the model's decoder at the new v.
   */
  async fit(loaded: LoadedModel, cache: EmbeddingCache, train: readonly EngineItem[], global: Map<string, HostTensor>, cfg: FitConfig, lambda: number): Promise<void> {
    setDecoderFromHost(loaded, (await this.current()) ?? global);
    const adam = (this.adam ??= adamInit());
    try {
      await trainDecoder(loaded, cache, train, [], {
        epochs: cfg.epochs, lr: cfg.lr, batchSize: cfg.batchSize, seed: cfg.seed * 1000 + cfg.round + SEED_OFFSET, points: cfg.points, jitter: boxJitterOf(cfg),
        proximalMu: lambda, proximalAnchor: global, adam, dataParallel: false, quiet: true,
      });
    } catch (e) {
      // a half-stepped Adam is not kept: the next round resumes the last saved state
      adamDispose(adam);
      this.adam = undefined;
      this.weights = undefined;
      this.loaded = false;
      throw e;
    }
    this.weights = decoderToHost(loaded);
    if (this.file) {
      await writeSiteState(this.file, 'personal model', this.weights, { format: FORMAT, fingerprint: this.fingerprint, round: String(cfg.round), lambda: String(lambda) });
      await this.optimizerFile.save(adam, cfg.round);
    }
  }

  /** Forget the personal model (memory and files): the server no longer asks for one, or it was for another model. */
  async clear(): Promise<void> {
    this.loaded = true;
    if (this.adam) adamDispose(this.adam);
    this.adam = undefined;
    this.weights = undefined;
    await removeSiteState(this.file);
    await this.optimizerFile.clear();
  }

  dispose(): void {
    if (this.adam) adamDispose(this.adam);
    this.adam = undefined;
  }
}
