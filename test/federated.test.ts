// Federated rounds over real gRPC on loopback (ephemeral ports), with the deterministic fake engine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors } from '@fedsam/shared/safetensors';
import { loadSamCheckpoint } from '@fedsam/shared/checkpoint/load';
import { frozenEncodersHash } from '@fedsam/shared/checkpoint/baseModelHash';
import { runServer } from '@fedsam/server/server';
import { runClient, type ClientHandle } from '@fedsam/client/daemon/client';
import { runSimulation } from '@fedsam/cli/simulation';
import { fakeEngine, FAKE_BASE_HASH, referenceFedAvg, tinyDecoder, type FakeEngine } from './helpers/fake-engine.ts';
import { assertClose, captureLogs, quietLogger, sitesConfig, tempDir, tokenFor } from './helpers/fed-harness.ts';

const SITES = ['site-a', 'site-b', 'site-c'];

function startClients(port: number, engines: FakeEngine[], names = SITES): ClientHandle[] {
  return engines.map((engine, i) =>
    runClient({
      server: `127.0.0.1:${port}`,
      token: tokenFor(names[i]!),
      site: names[i]!,
      engine,
      logger: quietLogger(),
      backoff: { initialMs: 50, maxMs: 500 },
    }),
  );
}

test('3 sites x 2 rounds: each new global is the FedAvg of the uploads, the last one averaged with the round before (recomputed here in float64)', async () => {
  const out = await tempDir();
  const logs = captureLogs();
  const initial = tinyDecoder(7);
  const server = await runServer(
    {
      listen: '127.0.0.1:0',
      rounds: 2,
      min_available_clients: 3,
      min_fit_clients: 3,
      fit: { epochs: 2, lr: 0.01, batch_size: 3, seed: 5, points_positive: 2, points_negative: 1 },
      base_model_hash: FAKE_BASE_HASH, weighting: { policy: 'reported' }, // FedAvg weighted by the counts, as Flower does
      out_dir: out,
      sites: sitesConfig(SITES),
      metrics: { host: '127.0.0.1', port: 0 },
      long_poll_s: 2,
      shutdown_grace_s: 5,
      final_average_rounds: 3,
    },
    { logger: logs.logger, initialDecoder: initial },
  );
  const engines = [
    fakeEngine({ target: 0.3, delta: 1, numExamples: 10 }),
    fakeEngine({ target: -0.2, delta: 2, numExamples: 25 }),
    fakeEngine({ target: 0.05, delta: -3, numExamples: 7 }),
  ];
  const clients = startClients(server.port, engines);

  let metricsText = '';
  server.coordinator.once('round', async () => {
    metricsText = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
  });
  const res = await server.done;
  const results = await Promise.all(clients.map((c) => c.done));
  assert.equal(res.round, 2);
  assert.deepEqual(results.map((r) => r.reason), ['shutdown', 'shutdown', 'shutdown']);
  assert.deepEqual(results.map((r) => r.roundsTrained), [[1, 2], [1, 2], [1, 2]]);

  let expectedGlobal = initial;
  for (const round of [1, 2]) {
    const fits = engines.map((e) => e.fits.find((f) => f.round === round)!);
    // every site trained on the previous global, with the round's config
    for (const f of fits) {
      for (const [n, t] of expectedGlobal) assertClose(f.global.get(n)!.data as Float32Array, t.data as Float32Array, `round ${round} global ${n}`);
      assert.equal(f.cfg.epochs, 2);
      assert.equal(f.cfg.lr, 0.01);
      assert.equal(f.cfg.batchSize, 3);
      assert.deepEqual(f.cfg.points, { positive: 2, negative: 1 }); // point prompts travel in the FitConfig
      assert.equal(f.cfg.round, round);
    }
    let expected = referenceFedAvg(fits.map((f) => ({ weights: f.weights, numExamples: f.numExamples })));
    // final_average_rounds 3: the last round's global is the plain mean of its FedAvg and the globals before (round 1)
    if (round === 2) expected = new Map([...expected].map(([n, e]) => [n, e.map((x, i) => (x + (expectedGlobal.get(n)!.data[i] as number)) / 2)]));
    const saved = (await readSafetensors(join(out, 'rounds', `round-00000${round}`, 'model.safetensors'))).tensors;
    assert.equal(saved.size, expected.size);
    for (const [n, e] of expected) assertClose(saved.get(n)!.data as Float32Array, e, `round ${round} ${n}`);
    expectedGlobal = saved;
  }
  for (const [n, t] of expectedGlobal) assertClose(server.coordinator.globalWeights.get(n)!.data as Float32Array, t.data as Float32Array, `final ${n}`);

  // evaluation: example-weighted dice over the sites, per-site metrics in the history
  const state = JSON.parse(await readFile(join(out, 'state.json'), 'utf8'));
  assert.equal(state.round, 2);
  const history = JSON.parse(await readFile(join(out, 'history.json'), 'utf8'));
  assert.deepEqual(history.map((h: { round: number }) => h.round), [1, 2]);
  const ev = history[1].evaluate;
  const evals = engines.map((e) => e.evals.at(-1)!.result);
  const wDice = evals.reduce((a, r) => a + r.numExamples * r.metrics.dice!, 0) / evals.reduce((a, r) => a + r.numExamples, 0);
  assert.ok(Math.abs(ev.metrics.dice - wDice) < 1e-12);
  assert.equal(ev.sites['site-b'].num_examples, 25);
  assert.equal(history[0].fit.accepted.length, 3);

  // structured logs: one JSON object per event, with round and site
  const acc = logs.find('update_accepted', (l) => l.round === 2 && l.site === 'site-c');
  assert.ok(acc, 'update_accepted log line for site-c round 2');
  assert.ok(logs.find('round_completed', (l) => l.round === 1));
  assert.deepEqual(logs.find('final_average', (l) => l.round === 2)?.rounds, [1, 2]);
  assert.deepEqual(history[1].fit.averaged_rounds, [1, 2]);
  assert.equal(history[0].fit.averaged_rounds, undefined);

  // Prometheus
  assert.match(metricsText, /fedsam_round 1/);
  assert.match(metricsText, /fedsam_clients_connected 3/);
  assert.match(metricsText, /fedsam_bytes_received_total [1-9]/);
  assert.match(metricsText, /fedsam_bytes_sent_total [1-9]/);
  assert.match(metricsText, /fedsam_aggregation_seconds_count 1/);
  // page 0 (the kernels' tables) is 64 KiB: more means the uploads were received into arena blocks
  assert.ok(Number(/fedsam_fold_arena_bytes (\d+)/.exec(metricsText)?.[1]) > 65536, 'uploads were received into the fold arena');
});

test('runSimulation: per-round history with per-site dice/iou', async () => {
  const engines = [
    fakeEngine({ target: 0.1, delta: 1, numExamples: 4 }),
    fakeEngine({ target: 0.2, delta: 2, numExamples: 6 }),
  ];
  const r = await runSimulation({
    sites: [
      { name: 'alpha', engineFactory: () => engines[0]! },
      { name: 'beta', engineFactory: () => engines[1]! },
    ],
    rounds: 2,
    initialDecoder: tinyDecoder(3),
    strategy: { name: 'fedprox', proximal_mu: 0.05 },
    fit: { epochs: 3 },
    logger: quietLogger(),
  });
  // FedProx: mu reaches the local training config
  assert.deepEqual(engines[0]!.fits.map((f) => [f.round, f.cfg.proximalMu, f.cfg.epochs]), [[1, 0.05, 3], [2, 0.05, 3]]);
  assert.deepEqual(r.history.map((h) => h.round), [0, 1, 2]);
  for (const h of r.history) {
    assert.deepEqual(Object.keys(h.sites).sort(), ['alpha', 'beta']);
    const expected = (4 * h.sites.alpha!.dice! + 6 * h.sites.beta!.dice!) / 10;
    assert.ok(Math.abs(h.mean_dice! - expected) < 1e-12);
    assert.equal(h.sites.beta!.num_examples, 6);
    assert.ok(h.sites.alpha!.iou! > 0);
  }
  // training moves the global towards the sites' targets: dice improves
  assert.ok(r.history[2]!.mean_dice! > r.history[0]!.mean_dice!);
});

const hasOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

test('TLS: a round over an encrypted channel', { skip: hasOpenssl ? false : 'openssl not installed (needed to make a test certificate)' }, async () => {
  const dir = await tempDir();
  const key = join(dir, 'server.key');
  const cert = join(dir, 'server.crt');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
    '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ], { stdio: 'ignore' });
  const server = await runServer(
    {
      listen: '127.0.0.1:0', rounds: 1, min_available_clients: 2, min_fit_clients: 2, evaluate_every: 0, long_poll_s: 1,
      base_model_hash: FAKE_BASE_HASH, weighting: { policy: 'reported' }, out_dir: await tempDir(), sites: sitesConfig(SITES), metrics: null, tls: { cert, key },
    },
    { logger: quietLogger(), initialDecoder: tinyDecoder(9) },
  );
  const engines = [fakeEngine({ target: 1, delta: 1, numExamples: 1 }), fakeEngine({ target: 2, delta: 1, numExamples: 3 })];
  const clients = engines.map((engine, i) =>
    runClient({ server: `127.0.0.1:${server.port}`, token: tokenFor(SITES[i]!), engine, logger: quietLogger(), tls: { ca: cert } }),
  );
  const res = await server.done;
  await Promise.all(clients.map((c) => c.done));
  assert.equal(res.round, 1);
  const expected = referenceFedAvg(engines.map((e) => ({ weights: e.fits[0]!.weights, numExamples: e.fits[0]!.numExamples })));
  for (const [n, e] of expected) assertClose(server.coordinator.globalWeights.get(n)!.data as Float32Array, e, n);
});

test('server from a SAM folder: base model hash check, HF round folders, merged export', async () => {
  const out = await tempDir();
  // the fixture, with a preprocessor_config.json declaring box crops, which the merged export must keep
  const base = join(out, 'base');
  await cp(fileURLToPath(new URL('./fixtures/tiny-box', import.meta.url)), base, { recursive: true });
  const preprocessor = JSON.stringify({ size: { longest_edge: 128 }, pad_size: { height: 128, width: 128 }, fedsam_box_crop: 3 });
  await writeFile(join(base, 'preprocessor_config.json'), preprocessor);
  const ck = await loadSamCheckpoint(base);
  const hash = frozenEncodersHash(ck.weights);
  const layout = new Map([...ck.weights].filter(([n]) => n.startsWith('mask_decoder.')).map(([n, t]) => [n, t.shape]));
  const merged = join(out, 'merged');
  const server = await runServer(
    {
      listen: '127.0.0.1:0', rounds: 1, min_available_clients: 2, min_fit_clients: 2, evaluate_every: 0, long_poll_s: 1,
      base_model: base, weighting: { policy: 'reported' }, out_dir: join(out, 'server'), export_merged: merged, sites: sitesConfig(SITES), metrics: null,
    },
    { logger: quietLogger() },
  );
  const engines = [
    fakeEngine({ target: 0.01, delta: 1, numExamples: 2, layout, baseModelHash: hash }),
    fakeEngine({ target: -0.01, delta: 2, numExamples: 3, layout, baseModelHash: hash }),
  ];
  const clients = startClients(server.port, engines);
  const res = await server.done;
  await Promise.all(clients.map((c) => c.done));
  assert.equal(res.round, 1);
  const expected = referenceFedAvg(engines.map((e) => ({ weights: e.fits[0]!.weights, numExamples: e.fits[0]!.numExamples })));
  // the round folder is a decoder-only HF folder
  const saved = await loadSamCheckpoint(join(out, 'server', 'rounds', 'round-000001'), { parts: ['mask_decoder'] });
  for (const [n, e] of expected) assertClose(saved.weights.get(n)!.data as Float32Array, e, n);
  // the merged export: frozen encoders of the base model + the global decoder
  const full = await loadSamCheckpoint(merged);
  assert.equal(frozenEncodersHash(full.weights), hash);
  for (const [n, e] of expected) assertClose(full.weights.get(n)!.data as Float32Array, e, `merged ${n}`);
  assert.equal(await readFile(join(merged, 'preprocessor_config.json'), 'utf8'), preprocessor, 'the base model\'s preprocessing goes along');
});
