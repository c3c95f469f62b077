// The pretraining run's resumable state: weights, Adam moments and step counts, and the step reached, in
// <out>/checkpoint/. Replaced atomically: written into a temp folder, then swapped in by renames (the previous one is
// kept as checkpoint.prev until the new one is in place, and is what a resume falls back to after a crash mid-swap).
import { mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { pathExists, writeFileAtomic } from '../fsutil.ts';
import { fsyncDir, readSafetensors, writeSafetensors, type HostTensor } from '../safetensors.ts';
import type { AdamState } from '../train/adam.ts';

export const CHECKPOINT_DIR = 'checkpoint';
const PREV = 'checkpoint.prev';

export interface CheckpointState {
  /** Steps completed. */
  step: number;
  /** What produced it (options, architecture), to refuse a resume with different settings. */
  run: Record<string, unknown>;
}

const host = (t: tf.Tensor): HostTensor => ({ dtype: 'float32', shape: [...t.shape], data: t.dataSync() as Float32Array });

export async function saveCheckpoint(out: string, state: CheckpointState, weights: Map<string, tf.Tensor>, adam: AdamState): Promise<void> {
  await mkdir(out, { recursive: true });
  const tmp = await mkdtemp(join(out, '.checkpoint.tmp-'));
  try {
    await writeSafetensors(join(tmp, 'weights.safetensors'), new Map([...weights].map(([n, t]) => [n, host(t)])));
    const opt = new Map<string, HostTensor>();
    for (const [n, t] of adam.m) opt.set(`m.${n}`, host(t));
    for (const [n, t] of adam.v) opt.set(`v.${n}`, host(t));
    await writeSafetensors(join(tmp, 'optimizer.safetensors'), opt);
    await writeFileAtomic(join(tmp, 'state.json'), JSON.stringify({ ...state, adamSteps: Object.fromEntries(adam.step) }, null, 2) + '\n');
    const cur = join(out, CHECKPOINT_DIR), prev = join(out, PREV);
    await rm(prev, { recursive: true, force: true });
    if (await pathExists(cur)) await rename(cur, prev);
    await rename(tmp, cur);
    await fsyncDir(out);
    await rm(prev, { recursive: true, force: true });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

export interface LoadedCheckpoint { state: CheckpointState; weights: Map<string, HostTensor>; adam: AdamState }

/** The last complete checkpoint under `out`, or undefined when there is none. */
export async function loadCheckpoint(out: string): Promise<LoadedCheckpoint | undefined> {
  for (const name of [CHECKPOINT_DIR, PREV]) {
    const dir = join(out, name);
    if (!(await pathExists(join(dir, 'state.json')))) continue;
    const json = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as CheckpointState & { adamSteps: Record<string, number> };
    const weights = (await readSafetensors(join(dir, 'weights.safetensors'))).tensors;
    const opt = (await readSafetensors(join(dir, 'optimizer.safetensors'))).tensors;
    const adam: AdamState = { step: new Map(Object.entries(json.adamSteps)), m: new Map(), v: new Map() };
    for (const [k, t] of opt) {
      const tensor = tf.tensor(t.data as Float32Array, t.shape, 'float32');
      (k.startsWith('m.') ? adam.m : adam.v).set(k.slice(2), tensor);
    }
    return { state: { step: json.step, run: json.run }, weights, adam };
  }
  return undefined;
}

export async function hasCheckpoint(out: string): Promise<boolean> {
  return (await pathExists(join(out, CHECKPOINT_DIR, 'state.json'))) || (await pathExists(join(out, PREV, 'state.json')));
}
