// Server state on disk (out_dir):
//   rounds/round-NNNNNN/  global decoder after round N (HF layout: config.json + model.safetensors with only
//                         mask_decoder.* when the SAM config is known, else model.safetensors alone), plus
//                         strategy.safetensors (server optimizer state) when the strategy has any
//   state.json            {round, global_version, round_dir, strategy, history, ...}: written last, atomically
//                         (temp + fsync + rename), so it always points at a complete round folder
//   history.json          the round history (metrics), for people and dashboards
// Resume = read state.json, load its round folder, continue at round + 1.
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { SamConfig } from '@fedsam/shared/config';
import { loadSamCheckpoint } from '@fedsam/shared/checkpoint/load';
import { saveSamCheckpoint } from '@fedsam/shared/checkpoint/save';
import { readSafetensors, writeSafetensors, type HostTensor } from '@fedsam/shared/safetensors';
import { pathExists, writeFileAtomic } from '@fedsam/shared/fsutil';
import { tensorsVersion } from '@fedsam/shared/checkpoint/hash';
import type { StrategyState } from './strategy/index.ts';

export interface SiteResult {
  /** As the site reported it. */
  num_examples: number;
  /** Its weight in the round under the weighting policy (weighting.ts); absent in earlier releases' history. */
  weight?: number;
  metrics: Record<string, number>;
}

export interface RoundRecord {
  round: number;
  fit?: {
    attempts: number;
    sampled: string[];
    accepted: string[];
    failed: Record<string, string>;
    num_examples: number;
    metrics: Record<string, number>;
    sites: Record<string, SiteResult>;
    aggregation_seconds: number;
    duration_seconds: number;
    global_version: string;
    /** Set in the last round when its global is the mean of these rounds' globals (final_average_rounds). */
    averaged_rounds?: number[];
  };
  /** The strategy's own evaluation of the new global (Flower's Strategy.evaluate), when it has one. */
  server_evaluate?: { loss: number; metrics: Record<string, number> };
  evaluate?: {
    sampled: string[];
    failed: Record<string, string>;
    num_examples: number;
    metrics: Record<string, number>;
    sites: Record<string, SiteResult>;
    duration_seconds: number;
    global_version: string;
  };
}

export interface PersistedState {
  format: 'fedsam-server-state';
  version: 1;
  /** Last completed (aggregated) round; 0 = initial model only. */
  round: number;
  global_version: string;
  /** Relative to out_dir. */
  round_dir: string;
  base_model_hash: string;
  strategy: { name: string; scalars: Record<string, number>; tensors_file: string | null };
  history: RoundRecord[];
  updated_at: string;
}

export class StateError extends Error {
  override name = 'StateError';
}

export const STATE_FILE = 'state.json';
export const HISTORY_FILE = 'history.json';

/** A round folder's global decoder: an HF decoder folder (with a model config) or a bare model.safetensors. */
async function readRoundGlobal(dir: string): Promise<Map<string, HostTensor>> {
  if (await pathExists(join(dir, 'config.json'))) return (await loadSamCheckpoint(dir, { parts: ['mask_decoder'] })).weights;
  return (await readSafetensors(join(dir, 'model.safetensors'), { filter: (n) => n.startsWith('mask_decoder.') })).tensors;
}

export function roundDirName(round: number): string {
  return `round-${String(round).padStart(6, '0')}`;
}



export class StateStore {
  constructor(readonly outDir: string, private readonly samConfig: SamConfig | undefined, private readonly keepRounds: number) {}

  get statePath(): string {
    return join(this.outDir, STATE_FILE);
  }

  async hasState(): Promise<boolean> {
    return pathExists(this.statePath);
  }

  async readState(): Promise<PersistedState> {
    let doc: PersistedState;
    try {
      doc = JSON.parse(await readFile(this.statePath, 'utf8')) as PersistedState;
    } catch (e) {
      throw new StateError(`cannot read ${this.statePath}: ${(e as Error).message}`);
    }
    if (doc?.format !== 'fedsam-server-state' || doc.version !== 1 || !Number.isInteger(doc.round)) {
      throw new StateError(`${this.statePath} is not a FedSAM server state file (format/version)`);
    }
    return doc;
  }

  /** Global decoder + strategy state of a persisted round; checks the content version. */
  async loadRound(state: PersistedState): Promise<{ global: Map<string, HostTensor>; strategy: StrategyState }> {
    const dir = join(this.outDir, state.round_dir);
    const global = await readRoundGlobal(dir);
    const version = tensorsVersion(global);
    if (version !== state.global_version) {
      throw new StateError(`${dir}: global decoder version ${version} differs from ${state.global_version} recorded in ${STATE_FILE} (corrupt state)`);
    }
    const tensors = state.strategy.tensors_file
      ? (await readSafetensors(join(dir, state.strategy.tensors_file))).tensors
      : new Map<string, HostTensor>();
    return { global, strategy: { scalars: state.strategy.scalars, tensors } };
  }

  /** The global decoder saved for round `round`, if its folder is still kept (keep_rounds). */
  async loadRoundGlobal(round: number): Promise<Map<string, HostTensor> | undefined> {
    const dir = join(this.outDir, 'rounds', roundDirName(round));
    return (await pathExists(dir)) ? readRoundGlobal(dir) : undefined;
  }

  /** Persist round `round`: its folder first, then state.json (atomic), then history.json. */
  async saveRound(args: {
    round: number;
    global: Map<string, HostTensor>;
    globalVersion: string;
    baseModelHash: string;
    strategyName: string;
    strategy: StrategyState;
    history: RoundRecord[];
  }): Promise<void> {
    const name = roundDirName(args.round);
    const dir = join(this.outDir, 'rounds', name);
    await mkdir(join(this.outDir, 'rounds'), { recursive: true });
    if (this.samConfig) {
      await saveSamCheckpoint(dir, this.samConfig, args.global, { only: 'mask_decoder' });
    } else {
      await mkdir(dir, { recursive: true });
      await writeSafetensors(join(dir, 'model.safetensors'), args.global);
    }
    // The one test hook in production code (docs/CONTRIBUTING.md): FEDSAM_TEST_CRASH_BEFORE_STATE=N dies here in
    // round N, after the round folder and before state.json, the crash --resume must survive (federated-faults).
    if (process.env.FEDSAM_TEST_CRASH_BEFORE_STATE === String(args.round)) process.kill(process.pid, 'SIGKILL');
    let tensorsFile: string | null = null;
    if (args.strategy.tensors.size > 0) {
      tensorsFile = 'strategy.safetensors';
      await writeSafetensors(join(dir, tensorsFile), args.strategy.tensors, { metadata: { format: 'fedsam-strategy', strategy: args.strategyName } });
    }
    const state: PersistedState = {
      format: 'fedsam-server-state',
      version: 1,
      round: args.round,
      global_version: args.globalVersion,
      round_dir: join('rounds', name),
      base_model_hash: args.baseModelHash,
      strategy: { name: args.strategyName, scalars: args.strategy.scalars, tensors_file: tensorsFile },
      history: args.history,
      updated_at: new Date().toISOString(),
    };
    await writeFileAtomic(this.statePath, JSON.stringify(state, null, 1) + '\n');
    await this.writeHistory(args.history);
    await this.prune(args.round);
  }

  /** Rewrite the history in state.json (e.g. after an evaluation) keeping everything else. */
  async updateHistory(history: RoundRecord[]): Promise<void> {
    if (await this.hasState()) {
      const state = await this.readState();
      state.history = history;
      state.updated_at = new Date().toISOString();
      await writeFileAtomic(this.statePath, JSON.stringify(state, null, 1) + '\n');
    }
    await this.writeHistory(history);
  }

  private async writeHistory(history: RoundRecord[]): Promise<void> {
    await writeFileAtomic(join(this.outDir, HISTORY_FILE), JSON.stringify(history, null, 2) + '\n');
  }

  private async prune(current: number): Promise<void> {
    const roundsDir = join(this.outDir, 'rounds');
    let names: string[];
    try {
      names = await readdir(roundsDir);
    } catch {
      return;
    }
    const rounds = names
      .map((n) => /^round-(\d{6})$/.exec(n))
      .filter((m): m is RegExpExecArray => !!m)
      .map((m) => Number(m[1]))
      .filter((r) => r <= current)
      .sort((a, b) => b - a);
    for (const r of rounds.slice(this.keepRounds)) {
      await rm(join(roundsDir, roundDirName(r)), { recursive: true, force: true });
    }
  }
}
