// Failure modes over real gRPC on loopback: killed site, slow site, killed + resumed server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readSafetensors, writeSafetensors } from '@fedsam/shared/safetensors';
import { runServer } from '@fedsam/server/server';
import { runClient, type ClientEvent, type ClientHandle } from '@fedsam/client/daemon/client';
import { fedAvg, fedOptStep } from '@fedsam/server/strategy/aggregate';
import { fakeEngine, FAKE_BASE_HASH, referenceFedAvg, tinyDecoder, type FakeEngine } from './helpers/fake-engine.ts';
import { assertClose, captureLogs, quietLogger, sitesConfig, spawnHelper, tempDir, tokenFor, until } from './helpers/fed-harness.ts';

const SITES = ['site-a', 'site-b', 'site-c'];

function client(port: number, site: string, engine: FakeEngine, onEvent?: (e: ClientEvent) => void): ClientHandle {
  return runClient({ server: `127.0.0.1:${port}`, token: tokenFor(site), site, engine, logger: quietLogger(), backoff: { initialMs: 50, maxMs: 300 }, onEvent });
}

test('a site killed mid-round (SIGKILL, child process) does not stall the round', async () => {
  const logs = captureLogs();
  const server = await runServer(
    {
      listen: '127.0.0.1:0', rounds: 1, min_available_clients: 3, min_fit_clients: 2, round_timeout_s: 30,
      heartbeat_interval_s: 0.2, heartbeat_timeout_s: 1.5, long_poll_s: 1, evaluate_every: 0,
      base_model_hash: FAKE_BASE_HASH, weighting: { policy: 'reported' }, out_dir: await tempDir(), sites: sitesConfig(SITES), metrics: null, shutdown_grace_s: 2,
    },
    { logger: logs.logger, initialDecoder: tinyDecoder(11) },
  );
  const a = fakeEngine({ target: 0.4, delta: 1, numExamples: 5 });
  const b = fakeEngine({ target: -0.4, delta: 2, numExamples: 15 });
  const killed = spawnHelper('fed-client-proc.ts', [
    JSON.stringify({ server: `127.0.0.1:${server.port}`, site: 'site-c', token: tokenFor('site-c'), engine: { target: 9, delta: 9, numExamples: 1000, fitDelayMs: 60_000 } }),
  ]);
  const clients = [client(server.port, 'site-a', a), client(server.port, 'site-b', b)];
  await killed.waitFor((m) => m.event === 'task' && m.kind === 'fit');
  const t0 = Date.now();
  killed.proc.kill('SIGKILL');
  await killed.exited;
  const res = await server.done;
  const elapsed = (Date.now() - t0) / 1000;
  await Promise.all(clients.map((c) => c.done));
  assert.equal(res.round, 1);
  assert.ok(elapsed < 10, `round finished ${elapsed.toFixed(1)} s after the kill (round_timeout is 30 s)`);
  const fit = res.history[0]!.fit!;
  assert.deepEqual(fit.accepted, ['site-a', 'site-b']);
  assert.match(fit.failed['site-c']!, /heartbeat/);
  const expected = referenceFedAvg([a, b].map((e) => ({ weights: e.fits[0]!.weights, numExamples: e.fits[0]!.numExamples })));
  for (const [n, e] of expected) assertClose(server.coordinator.globalWeights.get(n)!.data as Float32Array, e, n);
  assert.ok(logs.find('site_lost', (l) => l.site === 'site-c'));
});

test('a site slower than round_timeout: the round is retried (min_fit), its late update refused as stale', async () => {
  const logs = captureLogs();
  const server = await runServer(
    {
      listen: '127.0.0.1:0', rounds: 1, min_available_clients: 3, min_fit_clients: 3, round_timeout_s: 1.5,
      long_poll_s: 1, evaluate_every: 0, base_model_hash: FAKE_BASE_HASH, weighting: { policy: 'reported' }, out_dir: await tempDir(),
      sites: sitesConfig(SITES), metrics: null, shutdown_grace_s: 2,
    },
    { logger: logs.logger, initialDecoder: tinyDecoder(12) },
  );
  const engines = [
    fakeEngine({ target: 0.1, delta: 1, numExamples: 3 }),
    fakeEngine({ target: 0.2, delta: 2, numExamples: 4 }),
    // first fit takes longer than the round timeout, later ones are fast
    fakeEngine({ target: 0.3, delta: 3, numExamples: 5, fitDelayMs: (call) => (call === 0 ? 2000 : 0) }),
  ];
  const events: ClientEvent[] = [];
  const clients = SITES.map((s, i) => client(server.port, s, engines[i]!, i === 2 ? (e) => events.push(e) : undefined));
  const res = await server.done;
  await Promise.all(clients.map((c) => c.done));
  const fit = res.history[0]!.fit!;
  assert.ok(fit.attempts >= 2, `attempts ${fit.attempts}`); // 2, unless the machine is too loaded for the second window
  assert.deepEqual(fit.accepted, SITES);
  const refused = events.find((e) => e.type === 'update_refused');
  assert.ok(refused && refused.type === 'update_refused');
  assert.match(refused.message, /stale/);
  assert.ok(logs.find('round_retry', (l) => l.round === 1 && l.attempt === 1));
  // the aggregated updates are those of attempt 2 (the last fit of each site)
  const expected = referenceFedAvg(engines.map((e) => ({ weights: e.fits.at(-1)!.weights, numExamples: e.fits.at(-1)!.numExamples })));
  for (const [n, e] of expected) assertClose(server.coordinator.globalWeights.get(n)!.data as Float32Array, e, n);
});

test('server killed (SIGKILL) after round 1 and restarted with resume: continues at round 2 from the saved global and FedAdam state', async () => {
  const dir = await tempDir();
  const out = join(dir, 'out');
  const initialFile = join(dir, 'initial.safetensors');
  await writeSafetensors(initialFile, tinyDecoder(13));
  const config = (listen: string, resume: boolean) => ({
    listen, rounds: 3, min_available_clients: 2, min_fit_clients: 2, evaluate_every: 0,
    heartbeat_interval_s: 0.3, heartbeat_timeout_s: 5, long_poll_s: 1, round_timeout_s: 30,
    base_model_hash: FAKE_BASE_HASH, weighting: { policy: 'reported' }, initial_decoder: initialFile, out_dir: out, resume,
    sites: sitesConfig(['site-a', 'site-b']), metrics: null, shutdown_grace_s: 3,
    strategy: { name: 'fedadam', eta: 0.05 }, final_average_rounds: 3,
  });
  const cfgFile = join(dir, 'server.json');
  await writeFile(cfgFile, JSON.stringify(config('127.0.0.1:0', false)));
  const first = spawnHelper('fed-server-proc.ts', [cfgFile]);
  const { port } = (await first.waitFor((m) => m.event === 'listening')) as { port: number };

  const engines = [fakeEngine({ target: 0.5, delta: 1, numExamples: 2, fitDelayMs: 400 }), fakeEngine({ target: -0.5, delta: 2, numExamples: 6, fitDelayMs: 400 })];
  const events: string[] = [];
  const clients = ['site-a', 'site-b'].map((s, i) => client(port, s, engines[i]!, (e) => events.push(e.type)));
  const r1 = await first.waitFor((m) => m.event === 'round' && m.round === 1, 30_000);
  first.proc.kill('SIGKILL');
  await first.exited;

  const state1 = JSON.parse(await readFile(join(out, 'state.json'), 'utf8'));
  assert.equal(state1.round, 1);
  assert.equal(state1.global_version, r1.version);
  const global1 = (await readSafetensors(join(out, 'rounds', 'round-000001', 'model.safetensors'))).tensors;

  // Restart on the same port with resume; the clients reconnect by themselves.
  await writeFile(cfgFile, JSON.stringify(config(`127.0.0.1:${port}`, true)));
  const second = spawnHelper('fed-server-proc.ts', [cfgFile]);
  const listening = await second.waitFor((m) => m.event === 'listening');
  assert.equal(listening.round, 1);
  await second.waitFor((m) => m.event === 'done', 30_000);
  await second.exited;
  const results = await Promise.all(clients.map((c) => c.done));
  assert.deepEqual(results.map((r) => r.reason), ['shutdown', 'shutdown']);
  assert.ok(events.includes('disconnected'));

  const state = JSON.parse(await readFile(join(out, 'state.json'), 'utf8'));
  assert.equal(state.round, 3);
  assert.deepEqual(state.history.map((h: { round: number }) => h.round), [1, 2, 3]);
  assert.equal(second.messages.filter((m) => m.event === 'round').map((m) => m.round).join(), '2,3');
  for (const e of engines) {
    // round 2 trained on exactly the global saved after round 1 (also after a retrained, interrupted attempt)
    const r2 = e.fits.filter((f) => f.round === 2);
    assert.ok(r2.length >= 1);
    for (const f of r2) for (const [n, t] of global1) assertClose(f.global.get(n)!.data as Float32Array, t.data as Float32Array, `round 2 global ${n}`);
  }
  // The uninterrupted computation: FedAdam steps over the FedAvg of the updates aggregated in rounds 1..3 (the
  // last fit of each site in each round). It only matches if the moments m, v survived the crash.
  // The last round's global is then the mean of rounds 1..3 (final_average_rounds 3), round 1's read from the
  // folder the killed server wrote.
  let g = tinyDecoder(13);
  let moments;
  const globals: Array<typeof g> = [];
  for (const round of [1, 2, 3]) {
    const ups = engines.map((e) => e.fits.filter((f) => f.round === round).at(-1)!);
    const step = fedOptStep('adam', g, fedAvg(ups.map((f) => ({ weights: f.weights, numExamples: f.numExamples }))), moments, { eta: 0.05, beta_1: 0.9, beta_2: 0.99, tau: 1e-9 }, round);
    g = step.weights;
    moments = step.moments;
    globals.push(g);
  }
  const saved = (await readSafetensors(join(out, 'rounds', 'round-000003', 'model.safetensors'))).tensors;
  for (const [n, t] of g) {
    const mean = (t.data as Float32Array).map((_, i) => globals.reduce((a, x) => a + (x.get(n)!.data[i] as number), 0) / 3);
    assertClose(saved.get(n)!.data as Float32Array, mean, `round 3 ${n}`);
  }
  assert.ok((await readSafetensors(join(out, 'rounds', 'round-000003', 'strategy.safetensors'))).tensors.has('m.mask_decoder.iou_token.weight'));
});

test('a child-process site stops cleanly on SIGTERM (leaves the federation)', async () => {
  const logs = captureLogs();
  const server = await runServer(
    {
      listen: '127.0.0.1:0', rounds: 1, min_available_clients: 2, min_fit_clients: 1, long_poll_s: 1, evaluate_every: 0,
      base_model_hash: FAKE_BASE_HASH, weighting: { policy: 'reported' }, out_dir: await tempDir(), sites: sitesConfig(SITES), metrics: null,
    },
    { logger: logs.logger, initialDecoder: tinyDecoder(14) },
  );
  const child = spawnHelper('fed-client-proc.ts', [
    JSON.stringify({ server: `127.0.0.1:${server.port}`, site: 'site-c', token: tokenFor('site-c'), engine: { target: 1, delta: 1, numExamples: 1 } }),
  ]);
  await child.waitFor((m) => m.event === 'joined');
  child.proc.kill('SIGTERM');
  const code = await child.exited;
  assert.equal(code, 0);
  assert.ok(child.messages.some((m) => m.event === 'done' && m.reason === 'stopped'));
  await until(() => !!logs.find('site_left', (l) => l.site === 'site-c'), 5000, 'site_left log');
  await server.stop();
});
