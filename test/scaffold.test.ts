// SCAFFOLD at the site (client/src/engine/driftControl.ts): the control-variate math against an independent float64
// computation of SCAFFOLD's option II, the correction applied at every local step, and the state surviving a
// daemon restart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { initBackend } from '@fedsam/shared/backend';
import { loadModel } from '@fedsam/shared/model/presets';
import type { HostTensor } from '@fedsam/shared/safetensors';
import { Rng } from '@fedsam/shared/rng';
import { synthesize } from '@fedsam/client/data/synth';
import { prepareSite, type Site } from '@fedsam/client/engine/site';
import { SamEngine } from '@fedsam/client/engine/samEngine';
import { decoderToHost, setDecoderFromHost } from '@fedsam/client/engine/decoderWeights';
import { trainDecoder } from '@fedsam/client/engine/trainer';
import { DRIFT_CONTROL_FILE, driftCorrection, siteControl, SiteDriftControl } from '@fedsam/client/engine/driftControl';
import type { FitConfig } from '@fedsam/client/engine/localEngine';
import { createStrategy } from '@fedsam/server/strategy/index';
import { SCAFFOLD_PARAM } from '@fedsam/shared/transfer/messages';
import { tempDir } from './helpers/fed-harness.ts';

const SHAPES: Record<string, number[]> = { a: [3, 4], b: [5] };

function randomTensors(rng: Rng, scale = 1): Map<string, HostTensor> {
  return new Map(Object.entries(SHAPES).map(([n, s]) => {
    const d = new Float32Array(s.reduce((a, b) => a * b, 1));
    for (let i = 0; i < d.length; i++) d[i] = rng.normal(0, scale);
    return [n, { dtype: 'float32', shape: s, data: d } as HostTensor];
  }));
}
const get = (m: Map<string, HostTensor>, n: string, i: number) => (m.get(n)!.data as Float32Array)[i]!;

test('SCAFFOLD option II: the control a site derives from the global move equals the mean of the sites\' controls (float64)', () => {
  const rng = new Rng('scaffold-math');
  const K = 3, lrSum = 0.024; // three sites, equal weights and equal local budgets
  const x0 = randomTensors(rng);
  // Round 1: no correction. Each site moves to y_i; its control is (x0 − y_i)/lrSum.
  const y1 = Array.from({ length: K }, () => new Map([...x0].map(([n, t]) => [n, { ...t, data: (t.data as Float32Array).map((v) => v + rng.normal(0, 0.01)) }])));
  const c1 = y1.map((y) => siteControl(x0, y, lrSum));
  for (const n of Object.keys(SHAPES)) {
    for (let i = 0; i < x0.get(n)!.data.length; i++) {
      for (let k = 0; k < K; k++) assert.ok(Math.abs(get(c1[k]!, n, i) - (get(x0, n, i) - get(y1[k]!, n, i)) / lrSum) < 1e-3);
    }
  }
  // The server averages (FedAvg, equal weights): x1 = mean(y_i).
  const x1 = new Map([...x0].map(([n, t]) => [n, { ...t, data: (t.data as Float32Array).map((_, i) => y1.reduce((s, y) => s + get(y, n, i), 0) / K) }]));
  // Round 2: each site's correction c − c_i, with c derived from x0 → x1, against SCAFFOLD's c = mean(c_i) in float64.
  for (let k = 0; k < K; k++) {
    const corr = driftCorrection({ round: 1, global: x0, control: c1[k]!, lrSum }, x1);
    for (const n of Object.keys(SHAPES)) {
      for (let i = 0; i < x0.get(n)!.data.length; i++) {
        const c = c1.reduce((s, ci) => s + ((get(x0, n, i) - get(y1[c1.indexOf(ci)]!, n, i)) / lrSum), 0) / K;
        const want = c - (get(x0, n, i) - get(y1[k]!, n, i)) / lrSum;
        assert.ok(Math.abs(get(corr, n, i) - want) < 2e-3 * Math.max(1, Math.abs(want)), `${n}[${i}] site ${k}: ${get(corr, n, i)} vs ${want}`);
      }
    }
    // After a corrected round the site's new control is its uncorrected direction: (x1 − y)/lrSum − (c − c_i).
    const y2 = randomTensors(rng, 0.01);
    for (const [n, t] of y2) (t.data as Float32Array).forEach((v, i, a) => { a[i] = get(x1, n, i) + v; });
    const c2 = siteControl(x1, y2, lrSum, corr);
    for (const n of Object.keys(SHAPES)) {
      for (let i = 0; i < x0.get(n)!.data.length; i++) {
        const want = (get(x1, n, i) - get(y2, n, i)) / lrSum - get(corr, n, i);
        assert.ok(Math.abs(get(c2, n, i) - want) < 1e-3 * Math.max(1, Math.abs(want)));
      }
    }
  }
});

test('the scaffold strategy is FedAvg that asks the sites for the drift correction', () => {
  const s = createStrategy({ name: 'scaffold' });
  const fit = s.configureFit(1, { available: ['site-1', 'site-2'], attempt: 1 });
  assert.equal(fit.length, 2);
  for (const f of fit) assert.equal(f.ins.config.params[SCAFFOLD_PARAM], 1);
  assert.equal(createStrategy({ name: 'fedavg' }).configureFit(1, { available: ['site-1'], attempt: 1 })[0]!.ins.config.params[SCAFFOLD_PARAM], undefined);
});

async function oneSite(): Promise<{ site: Site; root: string }> {
  await initBackend();
  const root = await tempDir('fedsam-scaffold-');
  await synthesize({ out: join(root, 'data'), sites: 1, imagesPerSite: 3, seed: 5, size: 128 });
  const loaded = await loadModel(undefined);
  const site = await prepareSite({ model: loaded, data: join(root, 'data', 'site-1'), valSplit: 0.25, seed: 1, cacheDir: join(root, 'cache'), quiet: true });
  return { site, root };
}

test('the correction moves every trained weight by −lr·(c − c_i) after each local step', async () => {
  const { site } = await oneSite();
  const start = decoderToHost(site.loaded);
  const opts = { epochs: 1, lr: 3e-3, batchSize: 64, seed: 2, quiet: true, dataParallel: false } as const; // one step
  await trainDecoder(site.loaded, site.cache, site.train, [], opts);
  const plain = decoderToHost(site.loaded);
  const rng = new Rng('corr');
  const correction = new Map([...start].map(([n, t]) => [n, { ...t, data: (t.data as Float32Array).map(() => rng.normal(0, 1)) }]));
  setDecoderFromHost(site.loaded, start);
  const history = await trainDecoder(site.loaded, site.cache, site.train, [], { ...opts, driftCorrection: correction });
  assert.equal(history[0]!.steps, 1);
  assert.ok(Math.abs(history[0]!.lrSum - 3e-3) < 1e-12);
  const corrected = decoderToHost(site.loaded);
  let moved = 0;
  for (const [n, t] of corrected) {
    const p = plain.get(n)!.data as Float32Array, s0 = start.get(n)!.data as Float32Array, c = correction.get(n)!.data as Float32Array;
    const trained = p.some((v, i) => v !== s0[i]);
    (t.data as Float32Array).forEach((v, i) => {
      const want = trained ? p[i]! - 3e-3 * c[i]! : p[i]!;
      assert.ok(Math.abs(v - want) < 1e-6, `${n}[${i}]: ${v} vs ${want}`);
    });
    if (trained) moved++;
  }
  assert.ok(moved > 10, `only ${moved} tensors trained`);
  setDecoderFromHost(site.loaded, start);
});

test('SCAFFOLD state: kept in the state folder, a restarted site resumes it exactly; a skipped round means no correction', async () => {
  const { site, root } = await oneSite();
  const cfg = (round: number): FitConfig => ({ epochs: 1, lr: 3e-3, batchSize: 2, proximalMu: 0, seed: 4, round, optimizerState: 'fresh', scaffold: true });
  const global0 = decoderToHost(site.loaded);
  const events: Array<[string, Record<string, unknown>]> = [];
  const engine = (dir: string) => new SamEngine(site.loaded, site.cache, site.train, site.val, { quiet: true, dataParallel: false, stateDir: dir, log: (e, f) => events.push([e, f]) });
  const corrected = () => events.filter(([e]) => e === 'local_fit_done').map(([, f]) => f.scaffold_corrected);

  const steady = engine(join(root, 'steady'));
  const r1 = await steady.fit(global0, cfg(1));
  const r2 = await steady.fit(r1.weights, cfg(2));
  await steady.close();
  assert.deepEqual(corrected(), [false, true]);

  const dir = join(root, 'restarted');
  const first = engine(dir);
  await first.fit(global0, cfg(1));
  await first.close();
  await access(join(dir, DRIFT_CONTROL_FILE));
  events.length = 0;
  const second = engine(dir);
  const again = await second.fit(r1.weights, cfg(2));
  await second.close();
  assert.deepEqual(corrected(), [true]);
  assert.ok(events.some(([e]) => e === 'scaffold_state_resumed'));
  for (const [n, t] of r2.weights) assert.deepEqual(again.weights.get(n)!.data, t.data, n);

  // The site missed round 3: round 4 is uncorrected, and records a control for round 5.
  events.length = 0;
  const late = engine(dir);
  await late.fit(again.weights, cfg(4));
  await late.close();
  assert.deepEqual(corrected(), [false]);
  const state = new SiteDriftControl(dir, 'another model');
  assert.equal(await state.correctionFor(again.weights, 5), undefined, 'a state saved for another model is not used');
  setDecoderFromHost(site.loaded, global0);
});
