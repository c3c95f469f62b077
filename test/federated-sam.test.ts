// Federated rounds with the real SAM engine and the built-in small model: 3 sites x 2 rounds over loopback gRPC;
// every new global decoder must equal the FedAvg of what the sites uploaded, recomputed here in float64.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { initBackend } from '@fedsam/shared/backend';
import { loadModel } from '@fedsam/shared/model/presets';
import { readSafetensors, type HostTensor } from '@fedsam/shared/safetensors';
import { runSimulation } from '@fedsam/cli/simulation';
import { synthesize } from '@fedsam/client/data/synth';
import { prepareSite } from '@fedsam/client/engine/site';
import { SamEngine } from '@fedsam/client/engine/samEngine';
import { decoderToHost } from '@fedsam/client/engine/decoderWeights';
import type { LocalEngine, FitConfig, FitResult } from '@fedsam/client/engine/localEngine';
import { quietLogger, tempDir } from './helpers/fed-harness.ts';

class RecordingEngine implements LocalEngine {
  readonly fits: Array<{ round: number; cfg: FitConfig; result: FitResult }> = [];
  constructor(private readonly inner: SamEngine) {}
  get baseModelHash() { return this.inner.baseModelHash; }
  decoderNames() { return this.inner.decoderNames(); }
  async fit(global: Map<string, HostTensor>, cfg: FitConfig) {
    const result = await this.inner.fit(global, cfg);
    // keep a private copy of exactly what is uploaded
    const copy = new Map([...result.weights].map(([k, v]) => [k, { ...v, data: Float32Array.from(v.data as Float32Array) }]));
    this.fits.push({ round: cfg.round, cfg, result: { ...result, weights: copy } });
    return result;
  }
  evaluate(global: Map<string, HostTensor>) { return this.inner.evaluate(global); }
}

test('SAM engine: 3 sites x 2 rounds, global = FedAvg of the uploads; Dice is reported per site', async () => {
  await initBackend();
  const root = await tempDir('fedsam-fedsam-');
  await synthesize({ out: join(root, 'data'), sites: 3, imagesPerSite: 4, seed: 11, size: 128 });
  const engines: RecordingEngine[] = [];
  const loadedModels = [];
  for (let i = 1; i <= 3; i++) {
    const loaded = await loadModel(undefined);
    loadedModels.push(loaded);
    const site = await prepareSite({ model: loaded, data: join(root, 'data', `site-${i}`), valSplit: 0.25, seed: 1, cacheDir: join(root, 'cache'), quiet: true });
    engines.push(new RecordingEngine(new SamEngine(site.loaded, site.cache, site.train, site.val, { quiet: true })));
  }
  const initial = decoderToHost(loadedModels[0]);
  const out = join(root, 'server');
  const res = await runSimulation({
    sites: engines.map((e, i) => ({ name: `site-${i + 1}`, engineFactory: () => e })),
    rounds: 2,
    fit: { epochs: 1, lr: 1e-3, batch_size: 2, seed: 3, points_positive: 1, points_negative: 1 }, // box + 2 points per object
    initialDecoder: initial,
    samConfig: loadedModels[0].config,
    baseModelHash: loadedModels[0].baseModelHash,
    outDir: out,
    logger: quietLogger(),
    server: { final_average_rounds: 1 }, // every round's global is that round's FedAvg
  });
  let previous = initial;
  for (const e of engines) for (const f of e.fits) assert.deepEqual(f.cfg.points, { positive: 1, negative: 1 });
  for (const round of [1, 2]) {
    const fits = engines.map((e) => e.fits.find((f) => f.round === round)!.result);
    const total = fits.reduce((a, f) => a + f.numExamples, 0);
    const saved = (await readSafetensors(join(out, 'rounds', `round-00000${round}`, 'model.safetensors'))).tensors;
    let changed = 0;
    for (const [name, t] of saved) {
      const acc = new Float64Array(t.data.length);
      for (const f of fits) {
        const w = f.weights.get(name)!.data as Float32Array;
        for (let i = 0; i < acc.length; i++) acc[i] += (f.numExamples / total) * w[i];
      }
      const got = t.data as Float32Array;
      for (let i = 0; i < acc.length; i++) {
        const tol = Math.max(1e-12, Math.abs(acc[i]) * 2 ** -22);
        if (Math.abs(got[i] - acc[i]) > tol) assert.fail(`round ${round} ${name}[${i}]: ${got[i]} vs FedAvg ${acc[i]}`);
      }
      const prev = previous.get(name)!.data as Float32Array;
      for (let i = 0; i < got.length; i++) if (got[i] !== prev[i]) { changed++; break; }
    }
    assert.ok(changed > 10, `round ${round} changed ${changed} decoder tensors`);
    previous = saved;
  }
  assert.deepEqual(res.history.map((h) => h.round), [0, 1, 2]);
  for (const h of res.history) {
    assert.ok(h.mean_dice !== null && h.mean_dice >= 0 && h.mean_dice <= 1);
    assert.deepEqual(Object.keys(h.sites).sort(), ['site-1', 'site-2', 'site-3']);
  }
  for (const m of loadedModels) m.model.dispose();
});
