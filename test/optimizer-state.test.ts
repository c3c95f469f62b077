// A site's Adam state kept across rounds (fit.optimizer_state: keep): written to the site's state folder after each
// fit, resumed by a new engine on the same folder (a restarted daemon) with the very same result as an engine that
// never stopped; a state saved for another decoder is discarded; 'fresh' forgets it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { access, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@fedsam/shared/backend';
import { loadModel } from '@fedsam/shared/model/presets';
import { decodeSafetensors, type HostTensor } from '@fedsam/shared/safetensors';
import { adamInit, adamDispose, adamStep, ADAM_DEFAULTS } from '@fedsam/shared/train/adam';
import { warmupLr } from '@fedsam/shared/train/lr';
import { synthesize } from '@fedsam/client/data/synth';
import { prepareSite, type Site } from '@fedsam/client/engine/site';
import { SamEngine } from '@fedsam/client/engine/samEngine';
import { decoderToHost } from '@fedsam/client/engine/decoderWeights';
import { SiteOptimizerState, OPTIMIZER_STATE_FILE } from '@fedsam/client/engine/optimizerState';
import type { FitConfig } from '@fedsam/client/engine/localEngine';
import { loadSiteConfig, siteStateDir } from '@fedsam/client/daemon/siteConfig';
import { runSimulation } from '@fedsam/cli/simulation';
import { quietLogger, tempDir } from './helpers/fed-harness.ts';

const cfg = (round: number, optimizerState: FitConfig['optimizerState']): FitConfig =>
  ({ epochs: 1, lr: 3e-3, batchSize: 2, proximalMu: 0, seed: 4, round, optimizerState });

function maxDiff(a: Map<string, HostTensor>, b: Map<string, HostTensor>): number {
  let d = 0;
  for (const [n, t] of a) {
    const x = t.data as Float32Array, y = b.get(n)!.data as Float32Array;
    for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(x[i]! - y[i]!));
  }
  return d;
}

async function oneSite(): Promise<{ site: Site; root: string }> {
  await initBackend();
  const root = await tempDir('fedsam-optstate-');
  await synthesize({ out: join(root, 'data'), sites: 1, imagesPerSite: 3, seed: 5, size: 128 });
  const loaded = await loadModel(undefined);
  const site = await prepareSite({ model: loaded, data: join(root, 'data', 'site-1'), valSplit: 0.25, seed: 1, cacheDir: join(root, 'cache'), quiet: true });
  return { site, root };
}

const engine = (s: Site, stateDir: string | undefined, events?: Array<[string, Record<string, unknown>]>) =>
  new SamEngine(s.loaded, s.cache, s.train, s.val, { quiet: true, dataParallel: false, stateDir, log: (e, f) => events?.push([e, f]) });

test('kept optimizer state: saved after each fit, a restarted engine resumes it exactly; fresh forgets it', async () => {
  const { site, root } = await oneSite();
  const global0 = decoderToHost(site.loaded);

  // An engine that never stops: rounds 1 and 2 with its state in memory.
  const steady = engine(site, join(root, 'steady'));
  const r1 = await steady.fit(global0, cfg(1, 'keep'));
  const r2 = await steady.fit(r1.weights, cfg(2, 'keep'));
  await steady.close();
  const tensorsBefore = tf.memory().numTensors; // after a first fit (the model caches its positional embedding)

  // A daemon stopped after round 1: its state is on disk, a new engine on the same folder takes round 2.
  const dir = join(root, 'restarted');
  const first = engine(site, dir);
  const a1 = await first.fit(global0, cfg(1, 'keep'));
  await first.close();
  const file = join(dir, OPTIMIZER_STATE_FILE);
  const saved = decodeSafetensors(await readFile(file));
  assert.equal(saved.metadata.round, '1');
  const steps = JSON.parse(saved.metadata.steps!) as Record<string, number>;
  const perEpoch = Math.ceil(site.train.length / 2);
  assert.ok(Object.values(steps).length > 0 && Object.values(steps).every((t) => t === perEpoch), `steps ${JSON.stringify(steps)}`);
  const events: Array<[string, Record<string, unknown>]> = [];
  const restarted = engine(site, dir, events);
  const a2 = await restarted.fit(a1.weights, cfg(2, 'keep'));
  const resumed = events.find(([e]) => e === 'optimizer_state_resumed');
  assert.ok(resumed, 'the restarted engine logs that it resumed the state');
  assert.equal(resumed[1].round, 1);
  assert.equal(resumed[1].steps, perEpoch);
  assert.equal(maxDiff(a1.weights, r1.weights), 0);
  assert.equal(maxDiff(a2.weights, r2.weights), 0, 'restarted = never stopped');
  assert.equal(JSON.parse(decodeSafetensors(await readFile(file)).metadata.steps!)[[...Object.keys(steps)][0]!], 2 * perEpoch);

  // The state mattered: round 2 with a fresh Adam differs; and 'fresh' deletes the saved state.
  const f2 = await restarted.fit(a1.weights, cfg(2, 'fresh'));
  assert.ok(maxDiff(f2.weights, r2.weights) > 1e-6, 'a fresh optimizer gives another round 2');
  await assert.rejects(access(file), 'fresh removes the saved state');
  await restarted.close();
  assert.equal(tf.memory().numTensors, tensorsBefore, 'engines release their optimizer tensors');
  site.loaded.model.dispose();
});

test('a saved optimizer state for another base model or decoder layout is discarded, not used', async () => {
  const { site, root } = await oneSite();
  const global0 = decoderToHost(site.loaded);
  const dir = join(root, 'state');
  // a state file for another decoder (its fingerprint differs)
  const other = adamInit();
  other.m.set('mask_decoder.iou_token.weight', tf.ones([1, 8]));
  other.v.set('mask_decoder.iou_token.weight', tf.ones([1, 8]));
  other.step.set('mask_decoder.iou_token.weight', 40);
  await new SiteOptimizerState(dir, 'another-model').save(other, 9);
  adamDispose(other);
  const events: Array<[string, Record<string, unknown>]> = [];
  const e = engine(site, dir, events);
  const kept = await e.fit(global0, cfg(1, 'keep'));
  const discarded = events.find(([n]) => n === 'optimizer_state_discarded');
  assert.ok(discarded);
  assert.equal(discarded[1].reason, 'other-model');
  const fresh = await engine(site, undefined).fit(global0, cfg(1, 'fresh'));
  assert.equal(maxDiff(kept.weights, fresh.weights), 0, 'a discarded state = a new Adam');
  assert.equal(JSON.parse(decodeSafetensors(await readFile(join(dir, OPTIMIZER_STATE_FILE))).metadata.round!), 1, 'replaced by this decoder\'s state');
  await e.close();
  site.loaded.model.dispose();
});

test('the site update rule: Adam continued across rounds through the state file, with warm-up, = float64 Adam run straight through', async () => {
  await initBackend();
  const dir = await tempDir('fedsam-optstate-math-');
  const n = 7, steps = 6, perRound = 3, lr = 1e-2, warmup = 4;
  const g = (t: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(1.7 * i + 0.9 * t) * (i % 3 === 0 ? 1e-3 : 1) + 0.05 * t);
  const p0 = Float32Array.from({ length: n }, (_, i) => 0.1 * i - 0.3);
  // float64 reference: torch.optim.Adam (bias-corrected, eps outside the square root), step t's lr warmed up.
  const ref = (keep: boolean) => {
    const p = Float64Array.from(p0); let m = new Float64Array(n), v = new Float64Array(n);
    for (let s = 1; s <= steps; s++) {
      if (!keep && s === perRound + 1) { m = new Float64Array(n); v = new Float64Array(n); }
      const t = keep ? s : ((s - 1) % perRound) + 1;
      const a = warmupLr(lr, t, warmup), gt = g(s);
      for (let i = 0; i < n; i++) {
        m[i] = 0.9 * m[i]! + 0.1 * gt[i]!;
        v[i] = 0.999 * v[i]! + 0.001 * gt[i]! * gt[i]!;
        p[i] = p[i]! - (a / (1 - 0.9 ** t)) * m[i]! / (Math.sqrt(v[i]!) / Math.sqrt(1 - 0.999 ** t) + 1e-8);
      }
    }
    return p;
  };
  const name = 'mask_decoder.iou_token.weight';
  const params = new Map([[name, tf.tensor(p0, [1, n])]]);
  const file = new SiteOptimizerState(dir, 'fp');
  let state = adamInit();
  for (let s = 1; s <= steps; s++) {
    if (s === perRound + 1) { // a new round in a restarted daemon: the state comes back from the file
      await file.save(state, 1);
      adamDispose(state);
      const loaded = await file.load();
      assert.ok('state' in loaded);
      state = loaded.state;
    }
    const t = (state.step.get(name) ?? 0) + 1;
    const grads = new Map([[name, tf.tensor(g(s), [1, n])]]);
    adamStep(params, grads, state, { ...ADAM_DEFAULTS, lr: warmupLr(lr, t, warmup) });
    grads.get(name)!.dispose();
  }
  const got = params.get(name)!.dataSync();
  const kept = ref(true), fresh = ref(false);
  let err = 0, gap = 0;
  for (let i = 0; i < n; i++) { err = Math.max(err, Math.abs(got[i]! - kept[i]!)); gap = Math.max(gap, Math.abs(kept[i]! - fresh[i]!)); }
  assert.ok(err < 1e-6, `max |float32 − float64| ${err}`);
  assert.ok(gap > 100 * 1e-6, `kept and fresh Adam must differ by more than the tolerance (${gap})`);
  assert.equal(warmupLr(lr, 2, warmup), lr / 2);
  assert.equal(warmupLr(lr, 9, warmup), lr);
  assert.equal(warmupLr(lr, 1, 0), lr);
  adamDispose(state);
  params.get(name)!.dispose();
});

test('site config: state_dir from site.yaml (relative to the file), else runs/sites/<site>', async () => {
  const dir = await tempDir('fedsam-optstate-cfg-');
  const file = join(dir, 'site.yaml');
  await writeFile(file, 'server: localhost:8080\nsite: hospital-a\ntoken: t\nstate_dir: state\n');
  const c = await loadSiteConfig(file, {});
  assert.equal(siteStateDir(c), join(dir, 'state'));
  const d = await loadSiteConfig(undefined, { server: 'localhost:8080', site: 'hospital-b', token: 't' });
  assert.equal(siteStateDir(d), resolve('runs', 'sites', 'hospital-b'));
});

test('a federation stopped after round 1 and resumed (server --resume, new site daemons on the same state folders) trains round 2 as if it never stopped', async () => {
  await initBackend();
  const root = await tempDir('fedsam-optstate-fed-');
  await synthesize({ out: join(root, 'data'), sites: 2, imagesPerSite: 3, seed: 7, size: 96 });
  const loaded = await Promise.all([1, 2].map(() => loadModel(undefined)));
  const sites = await Promise.all([1, 2].map((i) => prepareSite({ model: loaded[i - 1]!, data: join(root, 'data', `site-${i}`), valSplit: 0.25, seed: 1, cacheDir: join(root, 'cache'), quiet: true })));
  const initial = decoderToHost(loaded[0]!);
  const run = async (name: string, rounds: number, resume: boolean, events?: Array<[string, Record<string, unknown>]>) => {
    const engines = sites.map((s, i) => engine(s, join(root, name, `state-${i + 1}`), events));
    try {
      return await runSimulation({
        sites: engines.map((e, i) => ({ name: `site-${i + 1}`, engineFactory: () => e })), rounds,
        fit: { epochs: 1, lr: 3e-3, batch_size: 2, seed: 3, optimizer_state: 'keep' },
        initialDecoder: initial, samConfig: loaded[0]!.config, baseModelHash: loaded[0]!.baseModelHash,
        outDir: join(root, name, 'server'), logger: quietLogger(), evaluateInitial: false, server: { resume },
      });
    } finally {
      await Promise.all(engines.map((e) => e.close()));
    }
  };
  const steady = await run('steady', 2, false);
  await run('stopped', 1, false);
  const events: Array<[string, Record<string, unknown>]> = [];
  const resumed = await run('stopped', 2, true, events);
  assert.equal(events.filter(([e]) => e === 'optimizer_state_resumed').length, 2, 'both new site daemons resume their optimizer');
  assert.equal(maxDiff(resumed.finalWeights, steady.finalWeights), 0, 'round 2 after the restart = round 2 without one');
  // and the kept state mattered: the same restart with fresh optimizers gives another round 2
  for (const i of [1, 2]) await rm(join(root, 'stopped', `state-${i}`), { recursive: true });
  await rm(join(root, 'stopped', 'server'), { recursive: true });
  await run('stopped', 1, false);
  for (const i of [1, 2]) await rm(join(root, 'stopped', `state-${i}`), { recursive: true });
  const lost = await run('stopped', 2, true);
  assert.ok(maxDiff(lost.finalWeights, steady.finalWeights) > 1e-6, 'without the saved state round 2 differs');
  for (const l of loaded) l.model.dispose();
});
