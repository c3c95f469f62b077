// SCAFFOLD's control variates (Karimireddy et al. 2020) at a site, in a form that needs no message beyond FedAvg's.
// Each local step is corrected by (c − c_i): c_i is this site's average step direction of its last round, c the
// federation's. SCAFFOLD's option II sets c_i⁺ = c_i − c + (x − y_i)/(K·η); averaged over the sites (all taking
// part, equal K·η) that is c⁺ = mean(x − y_i)/(K·η) = (x − x⁺)/(K·η): the server's control is the global model's
// last move divided by the local step budget. So a site that keeps the global it trained from can compute c from
// the next global itself, and the server only says "scaffold" (FitConfig.params). With Adam locally, the
// "direction" is the optimizer's step per unit of lr, and K·η is the sum of the lrs of the site's steps.
// The correction is only used when the site took part in the round just before; otherwise the round is plain
// FedAvg and the site records its control for the next one. State: <state_dir>/scaffold.safetensors.
import { join } from 'node:path';
import type { HostTensor } from '@fedsam/shared/safetensors';
import { readSiteState, removeSiteState, writeSiteState } from './siteStateFile.ts';

export const DRIFT_CONTROL_FILE = 'scaffold.safetensors';
const FORMAT = 'fedsam-scaffold-1';

export type Tensors = ReadonlyMap<string, HostTensor>;

/** What a site keeps between rounds. */
export interface DriftControlState {
  /** The round whose local training produced it. */
  round: number;
  /** The global model that round started from (x). */
  global: Map<string, HostTensor>;
  /** This site's control c_i: its average uncorrected step per unit lr in that round. */
  control: Map<string, HostTensor>;
  /** Sum of the lrs of that round's local steps (K·η with a constant lr). */
  lrSum: number;
}

function f32(shape: readonly number[], data: Float32Array): HostTensor {
  return { dtype: 'float32', shape: [...shape], data };
}

/**
 * The per-step correction c − c_i for this round, with c = (x_prev − x)/lrSum_prev: the federation's average
 * step per unit lr, from the global model's last move. Pure math (tested against float64).
 */
export function driftCorrection(prev: DriftControlState, global: Tensors): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const [n, x] of global) {
    const xp = prev.global.get(n)?.data as Float32Array | undefined, ci = prev.control.get(n)?.data as Float32Array | undefined;
    if (!xp || !ci || xp.length !== x.data.length) throw new Error(`SCAFFOLD state lacks ${n} or has another shape`);
    const xd = x.data as Float32Array, d = new Float32Array(xd.length);
    for (let k = 0; k < d.length; k++) d[k] = (xp[k]! - xd[k]!) / prev.lrSum - ci[k]!;
    out.set(n, f32(x.shape, d));
  }
  return out;
}

/**
 * This site's control after local training: c_i⁺ = (x − y_i)/lrSum − (c − c_i), its average step per unit lr
 * without the correction it was given (SCAFFOLD's option II).
 */
export function siteControl(global: Tensors, local: Tensors, lrSum: number, correction?: Tensors): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const [n, x] of global) {
    const y = local.get(n)!.data as Float32Array, xd = x.data as Float32Array, corr = correction?.get(n)?.data as Float32Array | undefined;
    const c = new Float32Array(xd.length);
    for (let k = 0; k < c.length; k++) c[k] = (xd[k]! - y[k]!) / lrSum - (corr ? corr[k]! : 0);
    out.set(n, f32(x.shape, c));
  }
  return out;
}

/** The site's SCAFFOLD state, in memory and (with a state folder) on disk, so a restarted daemon resumes it. */
export class SiteDriftControl {
  readonly file: string | undefined;
  private state: DriftControlState | undefined;
  private loaded = false;

  constructor(stateDir: string | undefined, readonly fingerprint: string, private readonly log?: (event: string, fields: Record<string, unknown>) => void) {
    this.file = stateDir ? join(stateDir, DRIFT_CONTROL_FILE) : undefined;
  }

  /** The correction for `round` (undefined when the site did not train in round − 1, or has no state). */
  async correctionFor(global: Tensors, round: number): Promise<Map<string, HostTensor> | undefined> {
    const prev = await this.current();
    if (!prev || prev.round !== round - 1 || !(prev.lrSum > 0)) return undefined;
    return driftCorrection(prev, global);
  }

  /** Record this round's control (after local training from `global` to `local`). */
  async record(global: Tensors, local: Tensors, lrSum: number, round: number, correction?: Tensors): Promise<void> {
    const copy = (m: Tensors) => new Map([...m].map(([n, t]) => [n, f32(t.shape, Float32Array.from(t.data as Float32Array))]));
    this.state = { round, global: copy(global), control: siteControl(global, local, lrSum, correction), lrSum };
    this.loaded = true;
    if (!this.file) return;
    const tensors = new Map<string, HostTensor>();
    for (const [n, t] of this.state.global) tensors.set(`global/${n}`, t);
    for (const [n, t] of this.state.control) tensors.set(`control/${n}`, t);
    await writeSiteState(this.file, 'SCAFFOLD state', tensors, { format: FORMAT, fingerprint: this.fingerprint, round: String(round), lr_sum: String(lrSum) });
  }

  /** Forget the state (the server no longer asks for SCAFFOLD). */
  async clear(): Promise<void> {
    this.state = undefined;
    this.loaded = true;
    await removeSiteState(this.file);
  }

  private async current(): Promise<DriftControlState | undefined> {
    if (this.loaded) return this.state;
    this.loaded = true;
    if (!this.file) return undefined;
    const r = await readSiteState(this.file, FORMAT, this.fingerprint);
    if (!('tensors' in r)) {
      if (r.discarded) this.log?.('scaffold_state_discarded', { file: this.file, reason: r.discarded, detail: r.detail });
      return undefined;
    }
    const global = new Map<string, HostTensor>(), control = new Map<string, HostTensor>();
    for (const [name, t] of r.tensors) {
      const slash = name.indexOf('/');
      const kind = name.slice(0, slash), param = name.slice(slash + 1);
      if (kind === 'global') global.set(param, f32(t.shape, t.data as Float32Array));
      else if (kind === 'control') control.set(param, f32(t.shape, t.data as Float32Array));
    }
    this.state = { round: Number(r.metadata.round ?? -1), global, control, lrSum: Number(r.metadata.lr_sum ?? 0) };
    this.log?.('scaffold_state_resumed', { file: this.file, round: this.state.round });
    return this.state;
  }
}
