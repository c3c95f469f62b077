// Ditto's personal model (fit.ditto_lambda; client/src/engine/personalModel.ts): trained after the global's fit
// without touching the update that travels, pulled toward the global the site received (not toward where it
// started), saved in the site's state folder so a restarted daemon continues it exactly, and evaluated beside the
// global.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@fedsam/shared/backend';
import { loadModel } from '@fedsam/shared/model/presets';
import { decodeSafetensors, type HostTensor } from '@fedsam/shared/safetensors';
import { synthesize } from '@fedsam/client/data/synth';
import { prepareSite, type Site } from '@fedsam/client/engine/site';
import { SamEngine } from '@fedsam/client/engine/samEngine';
import { decoderToHost } from '@fedsam/client/engine/decoderWeights';
import { PERSONAL_MODEL_FILE, PERSONAL_OPTIMIZER_FILE } from '@fedsam/client/engine/personalModel';
import type { FitConfig } from '@fedsam/client/engine/localEngine';
import { tempDir } from './helpers/fed-harness.ts';

const cfg = (round: number, lambda?: number): FitConfig =>
  ({ epochs: 1, lr: 3e-3, batchSize: 2, proximalMu: 0, seed: 4, round, optimizerState: 'keep', ...(lambda === undefined ? {} : { ditto: { lambda } }) });

function maxDiff(a: Map<string, HostTensor>, b: Map<string, HostTensor>): number {
  let d = 0;
  for (const [n, t] of a) {
    const x = t.data as Float32Array, y = b.get(n)!.data as Float32Array;
    for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(x[i]! - y[i]!));
  }
  return d;
}

function distance(a: Map<string, HostTensor>, b: Map<string, HostTensor>): number {
  let s = 0;
  for (const [n, t] of a) {
    const x = t.data as Float32Array, y = b.get(n)!.data as Float32Array;
    for (let i = 0; i < x.length; i++) s += (x[i]! - y[i]!) ** 2;
  }
  return Math.sqrt(s);
}

async function oneSite(): Promise<{ site: Site; root: string }> {
  await initBackend();
  const root = await tempDir('fedsam-ditto-');
  await synthesize({ out: join(root, 'data'), sites: 1, imagesPerSite: 4, seed: 6, size: 128 });
  const loaded = await loadModel(undefined);
  const site = await prepareSite({ model: loaded, data: join(root, 'data', 'site-1'), valSplit: 0.25, seed: 1, cacheDir: join(root, 'cache'), quiet: true });
  return { site, root };
}

const engine = (s: Site, stateDir: string | undefined, events?: Array<[string, Record<string, unknown>]>) =>
  new SamEngine(s.loaded, s.cache, s.train, s.val, { quiet: true, dataParallel: false, stateDir, log: (e, f) => events?.push([e, f]) });

const personalOf = async (dir: string) => decodeSafetensors(await readFile(join(dir, PERSONAL_MODEL_FILE)));

test('Ditto: the update that travels is the same with and without a personal model; the personal model is saved, evaluated, and resumed exactly after a restart', async () => {
  const { site, root } = await oneSite();
  const global0 = decoderToHost(site.loaded);

  const plain = engine(site, join(root, 'plain'));
  const p1 = await plain.fit(global0, cfg(1));
  await plain.close();

  // a site that never stops: rounds 1 and 2 with Ditto
  const steadyDir = join(root, 'steady');
  const steady = engine(site, steadyDir);
  const s1 = await steady.fit(global0, cfg(1, 0.1));
  assert.equal(maxDiff(s1.weights, p1.weights), 0, 'the personal pass does not change the update');
  const v1 = (await personalOf(steadyDir)).tensors as Map<string, HostTensor>;
  assert.ok(maxDiff(v1, s1.weights) > 1e-6, 'the personal model is a model of its own');
  const ev = await steady.evaluate(s1.weights);
  assert.ok(ev.metrics.personal_dice! >= 0 && ev.metrics.personal_dice! <= 1, `personal_dice ${ev.metrics.personal_dice}`);
  assert.ok(Number.isFinite(ev.metrics.personal_iou));
  const plainEval = await engine(site, undefined).evaluate(s1.weights);
  assert.equal(ev.metrics.dice, plainEval.metrics.dice, 'dice is still the global\'s');
  const s2 = await steady.fit(s1.weights, cfg(2, 0.1));
  const v2 = (await personalOf(steadyDir)).tensors as Map<string, HostTensor>;
  // the site's own model, ready to use: an HF folder with the frozen encoders and the personal decoder
  assert.equal(await steady.savePersonalModel(join(root, 'personal-model')), true);
  const exported = await loadModel(join(root, 'personal-model'));
  assert.equal(exported.baseModelHash, site.loaded.baseModelHash, 'the same frozen encoders');
  assert.equal(maxDiff(decoderToHost(exported), v2), 0, 'the personal decoder');
  exported.model.dispose();
  await steady.close();
  assert.equal(await engine(site, undefined).savePersonalModel(join(root, 'none')), false, 'no personal model, no folder');

  // a site daemon stopped after round 1: a new engine on the same state folder continues the personal model
  const dir = join(root, 'restarted');
  const first = engine(site, dir);
  await first.fit(global0, cfg(1, 0.1));
  await first.close();
  const saved = await personalOf(dir);
  assert.equal(saved.metadata.round, '1');
  assert.equal(saved.metadata.lambda, '0.1');
  const events: Array<[string, Record<string, unknown>]> = [];
  const restarted = engine(site, dir, events);
  const r2 = await restarted.fit(s1.weights, cfg(2, 0.1));
  const resumed = events.find(([e]) => e === 'personal_model_resumed');
  assert.ok(resumed, 'the restarted engine logs that it resumed its personal model');
  assert.equal(resumed[1].round, 1);
  assert.equal(resumed[1].optimizer, 'resumed');
  assert.equal(maxDiff(r2.weights, s2.weights), 0);
  assert.equal(maxDiff((await personalOf(dir)).tensors as Map<string, HostTensor>, v2), 0, 'restarted = never stopped');

  // a round without Ditto: the server no longer asks for one, so the site drops it (and reports no personal Dice)
  await restarted.fit(r2.weights, cfg(3));
  await assert.rejects(access(join(dir, PERSONAL_MODEL_FILE)));
  await assert.rejects(access(join(dir, PERSONAL_OPTIMIZER_FILE)));
  assert.equal((await restarted.evaluate(r2.weights)).metrics.personal_dice, undefined);
  await restarted.close();
  site.loaded.model.dispose();
});

test('Ditto: a personal model that cannot be trained or saved is logged, and the round\'s update still goes out', async () => {
  const { site, root } = await oneSite();
  const global0 = decoderToHost(site.loaded);
  const plain = await engine(site, undefined).fit(global0, cfg(1));
  const dir = join(root, 'blocked');
  await mkdir(join(dir, PERSONAL_MODEL_FILE), { recursive: true }); // a folder where the personal model's file goes
  await writeFile(join(dir, PERSONAL_MODEL_FILE, 'x'), 'x');
  const events: Array<[string, Record<string, unknown>]> = [];
  const e = engine(site, dir, events);
  const r = await e.fit(global0, cfg(1, 0.1));
  await e.close();
  assert.equal(maxDiff(r.weights, plain.weights), 0, 'the update is the global\'s fit');
  const failed = events.find(([n]) => n === 'personal_fit_failed');
  assert.ok(failed, `events: ${events.map(([n]) => n).join(', ')}`);
  assert.equal(failed[1].round, 1);
  site.loaded.model.dispose();
});

test('Ditto: the proximal term pulls the personal model toward the global it received this round, the more the larger λ', async () => {
  const { site, root } = await oneSite();
  const global0 = decoderToHost(site.loaded);
  // round 1 makes a personal model v1 away from the global; round 2 brings a different global g2 (here: the start)
  const after = async (lambda: number) => {
    const dir = join(root, `lambda-${lambda}`);
    const e = engine(site, dir);
    const r1 = await e.fit(global0, cfg(1, lambda));
    const v1 = (await personalOf(dir)).tensors as Map<string, HostTensor>;
    await e.fit(r1.weights, cfg(2, lambda));
    const v2 = (await personalOf(dir)).tensors as Map<string, HostTensor>;
    await e.close();
    return { g2: r1.weights, v1, v2 };
  };
  const free = await after(0);
  const tensorsBefore = tf.memory().numTensors; // after a first fit (the model caches its positional embedding)
  const pinned = await after(1e4);
  assert.equal(tf.memory().numTensors, tensorsBefore, 'the personal model\'s tensors are released');
  // λ = 0 is training alone: nothing pulls; a huge λ moves v toward this round's global g2, not back to v1
  assert.ok(distance(pinned.v2, pinned.g2) < distance(pinned.v1, pinned.g2), `λ 1e4: ‖v2 − g2‖ ${distance(pinned.v2, pinned.g2)} < ‖v1 − g2‖ ${distance(pinned.v1, pinned.g2)}`);
  assert.ok(distance(pinned.v2, pinned.g2) < distance(free.v2, free.g2), 'the larger λ ends nearer the global');
  site.loaded.model.dispose();
});
