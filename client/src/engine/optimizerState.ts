// A site's Adam state kept across federated rounds (fit.optimizer_state: keep). Without it every round starts a
// fresh Adam, whose first bias-corrected steps move every weight by about lr whatever its gradient: each round
// begins with a jolt, and the sites' jolts do not average out (README, "Results"). The state lives in memory
// between rounds and in <state_dir>/optimizer.safetensors (written atomically after each fit), so a restarted
// daemon resumes it. It is only valid for the decoder it was built on: a different base model or decoder layout
// discards it.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { HostTensor } from '@fedsam/shared/safetensors';
import { readSiteState, removeSiteState, writeSiteState, type DiscardReason } from './siteStateFile.ts';
import { adamDispose, adamInit, type AdamState } from '@fedsam/shared/train/adam';

export const OPTIMIZER_STATE_FILE = 'optimizer.safetensors';
const FORMAT = 'fedsam-adam-1';

/** What a kept state belongs to: the frozen encoders' hash and the decoder's names and shapes. */
export function optimizerFingerprint(baseModelHash: string, layout: ReadonlyMap<string, readonly number[]>): string {
  const h = createHash('sha256').update(baseModelHash);
  for (const [n, s] of [...layout].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) h.update(`\n${n}:${s.join('x')}`);
  return h.digest('hex');
}

export interface LoadedOptimizerState {
  state: AdamState;
  /** The federated round of the fit that wrote it. */
  round: number;
}

export type { DiscardReason };

/**
 * The kept Adam state of a site: `load` once at start (a restarted daemon), `save` after each fit, `clear` when the
 * server asks for a fresh optimizer. Tensors are float32 host arrays in the file, tfjs tensors in memory.
 */
export class SiteOptimizerState {
  readonly file: string | undefined;
  /** `fileName`: another kept optimizer of the site (the personal model's) lives beside this one. */
  constructor(stateDir: string | undefined, readonly fingerprint: string, fileName = OPTIMIZER_STATE_FILE) {
    this.file = stateDir ? join(stateDir, fileName) : undefined;
  }

  /** The saved state, or why it was discarded (a state for another model or decoder shape is never used). */
  async load(): Promise<LoadedOptimizerState | { discarded?: DiscardReason; detail?: string }> {
    if (!this.file) return {};
    const r = await readSiteState(this.file, FORMAT, this.fingerprint);
    if (!('tensors' in r)) return r;
    const meta = r.metadata;
    let steps: Record<string, number>;
    try {
      steps = JSON.parse(meta.steps ?? '{}') as Record<string, number>;
    } catch (e) {
      return { discarded: 'unreadable', detail: `steps: ${(e as Error).message}` };
    }
    const state = adamInit();
    for (const [name, t] of r.tensors) {
      const [kind, ...rest] = name.split('/');
      const param = rest.join('/');
      if ((kind !== 'm' && kind !== 'v') || !(param in steps)) continue;
      state[kind].set(param, tf.tensor(t.data as Float32Array, t.shape, 'float32'));
    }
    for (const [param, t] of Object.entries(steps)) {
      if (!state.m.has(param) || !state.v.has(param)) {
        adamDispose(state);
        return { discarded: 'unreadable', detail: `moments of ${param} are missing` };
      }
      state.step.set(param, t);
    }
    return { state, round: Number(meta.round ?? 0) };
  }

  /** Write the state after a fit (temp file, fsync, rename: a crash leaves the old file or the new one). */
  async save(state: AdamState, round: number): Promise<void> {
    if (!this.file) return;
    const tensors = new Map<string, HostTensor>();
    for (const kind of ['m', 'v'] as const) {
      for (const [param, t] of state[kind]) tensors.set(`${kind}/${param}`, { dtype: 'float32', shape: [...t.shape], data: t.dataSync() as Float32Array });
    }
    const meta = { format: FORMAT, fingerprint: this.fingerprint, round: String(round), steps: JSON.stringify(Object.fromEntries(state.step)) };
    await writeSiteState(this.file, 'optimizer state', tensors, meta);
  }

  /** Forget the saved state (the server asked for a fresh optimizer, or the state was for another model). */
  async clear(): Promise<void> {
    await removeSiteState(this.file);
  }
}
