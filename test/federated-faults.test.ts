// The fault matrix (issue 13), each case over real processes and loopback sockets, each bounded in time:
// a site killed mid-upload and mid-download, a stalled upload, 12 sites at once (more than the upload permits),
// the server killed between a round's folder and its state file then --resume, median and trimmed mean end to
// end, a site whose training fails (NaN) or hangs. (mTLS faults: federated-certificates.test.ts; earlier cases:
// federated-failures.test.ts.)
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { readSafetensors, writeSafetensors, type HostTensor } from '@fedsam/shared/safetensors';
import { runServer, type ServerHandle } from '@fedsam/server/server';
import { runClient, type ClientEvent, type ClientHandle } from '@fedsam/client/daemon/client';
import { fakeEngine, FAKE_BASE_HASH, referenceFedAvg, tinyDecoder, tinyLayout, type FakeEngine, type FakeEngineOptions } from './helpers/fake-engine.ts';
import { assertClose, captureLogs, quietLogger, sitesConfig, spawnHelper, tempDir, tokenFor, until, type CapturedLogs } from './helpers/fed-harness.ts';
import { layoutManifest, RawSite, updateFrames } from './helpers/raw-client.ts';

const cleanups: Array<() => unknown> = [];
after(async () => {
  for (const c of cleanups.splice(0)) await c();
});

/** A decoder layout of ~4 MB, so that transfers span several chunks and windows. */
const BIG = new Map([...tinyLayout(), ['mask_decoder.output_hypernetworks_mlps.0.layers.0.weight', [1024, 1024]]]);

async function server(sites: string[], over: Record<string, unknown>, logs: CapturedLogs = captureLogs(), layout = tinyLayout()): Promise<ServerHandle> {
  const h = await runServer(
    {
      listen: '127.0.0.1:0', rounds: 1, min_available_clients: sites.length, min_fit_clients: sites.length, round_timeout_s: 60,
      heartbeat_interval_s: 0.2, heartbeat_timeout_s: 4, long_poll_s: 1, evaluate_every: 0, base_model_hash: FAKE_BASE_HASH,
      weighting: { policy: 'reported' }, out_dir: await tempDir(), sites: sitesConfig(sites), metrics: null, shutdown_grace_s: 2, ...over,
    },
    { logger: logs.logger, initialDecoder: tinyDecoder(51, layout) },
  );
  cleanups.push(() => h.stop());
  return h;
}

function client(port: number, site: string, engine: FakeEngine, extra: { fitTimeoutMs?: number; onEvent?: (e: ClientEvent) => void } = {}): ClientHandle {
  const c = runClient({ server: `127.0.0.1:${port}`, token: tokenFor(site), site, engine, logger: quietLogger(), backoff: { initialMs: 50, maxMs: 300 }, ...extra });
  cleanups.push(() => c.stop());
  return c;
}

const engine = (i: number, o: Partial<FakeEngineOptions> = {}) => fakeEngine({ target: 0.1 * i - 0.2, delta: i, numExamples: 3 + i, ...o });

for (const mode of ['upload', 'download'] as const) {
  test(`fault: a site killed mid-${mode} (SIGKILL) costs the others nothing; the round goes on`, { timeout: 60_000 }, async () => {
    const logs = captureLogs();
    const h = await server(['a', 'b', 'killed'], { min_fit_clients: 2, limits: { max_concurrent_uploads: 1 } }, logs, BIG);
    // The kill must land after the server has begun the upload (the raw site's writes may still sit in its buffers when it says 'stalled').
    const begun = new Promise<void>((r) => {
      for (const e of ['upload_started', 'refused'] as const) h.coordinator.on(e, (site: string) => site === 'killed' && r());
    });
    const proc = spawnHelper('raw-site-proc.ts', [JSON.stringify({ server: `127.0.0.1:${h.port}`, site: 'killed', token: tokenFor('killed'), layout: [...BIG], mode })]);
    cleanups.push(() => proc.proc.kill('SIGKILL'));
    // a and b train only after the killed site has stalled (with one upload permit, a stalled upload holds it)
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const clients = ['a', 'b'].map((s, i) => client(h.port, s, fakeEngine({ target: 0.1 * i, delta: 1, numExamples: 2 + i, layout: BIG, gate })));
    await proc.waitFor((m) => m.event === 'stalled', 30_000);
    if (mode === 'upload') await begun;
    proc.proc.kill('SIGKILL');
    await proc.exited;
    const t0 = Date.now();
    open();
    const res = await h.done;
    await Promise.all(clients.map((c) => c.done));
    const fit = res.history[0]!.fit!;
    assert.deepEqual(fit.accepted, ['a', 'b']);
    assert.match(fit.failed.killed!, /heartbeat/);
    assert.ok((Date.now() - t0) / 1000 < 20, 'the round ended soon after the kill');
    if (mode === 'upload') {
      // The refusal is logged once the upload's handler has unwound, which may be just after the round closed. The raw
      // site sends no heartbeats: on a loaded machine the server may drop it for silence before the kill is seen,
      // and then ends the stalled upload itself (stale_round).
      const killedRefusal = (l: Record<string, unknown>) => l.site === 'killed';
      await until(() => !!logs.find('update_refused', killedRefusal), 10_000, 'the cut upload to be logged').catch(() => undefined);
      const cut = logs.find('update_refused', killedRefusal);
      assert.ok(cut && ['cancelled', 'transfer_incomplete', 'stale_round'].includes(String(cut.reason)), `the cut upload is logged as such: ${JSON.stringify(cut)}`);
    }
  });
}

test('fault: a stalled upload is ended by the server (frame and header deadlines); its permit goes to the next site', { timeout: 60_000 }, async () => {
  const logs = captureLogs();
  const h = await server(['a', 'b', 'staller'], { limits: { max_concurrent_uploads: 1, chunk_timeout_s: 1, header_timeout_s: 1 } }, logs);
  const staller = new RawSite(`127.0.0.1:${h.port}`, tokenFor('staller'));
  cleanups.push(() => staller.close());
  const [j] = await Promise.all([staller.join('staller', FAKE_BASE_HASH, layoutManifest(tinyLayout()))]);
  assert.equal(j.code, status.OK);
  const clients = ['a', 'b'].map((s, i) => client(h.port, s, engine(i, { fitDelayMs: 300 })));
  const task = await staller.task('fit');
  const frames = updateFrames({ task_id: String(task.task_id), round: Number(task.round), num_examples: 4 }, tinyLayout(), () => 0.3);
  // header and one chunk, then silence: the only upload permit is held until the frame deadline
  const stalled = staller.upload();
  stalled.write(frames[0]!);
  stalled.write(frames[1]!);
  const r = await stalled.result;
  assert.equal(r.code, status.DEADLINE_EXCEEDED, r.details);
  // header-less: ended at the header deadline
  const idle = staller.upload();
  const r2 = await idle.result;
  assert.equal(r2.code, status.DEADLINE_EXCEEDED, r2.details);
  // the site can still deliver (the stall counted once against its task, not more)
  const ok = staller.upload();
  await RawSite.pump(ok, frames);
  assert.equal((await ok.result).code, status.OK);
  const res = await h.done;
  await Promise.all(clients.map((c) => c.done));
  assert.deepEqual(res.history[0]!.fit!.accepted, ['a', 'b', 'staller']);
  assert.ok(logs.find('update_refused', (l) => l.site === 'staller' && l.reason === 'chunk_timeout'));
});

test('fault: 12 sites at once (4 upload permits), 2 rounds: every update accepted, FedAvg exact', { timeout: 150_000 }, async () => {
  const names = Array.from({ length: 12 }, (_, i) => `site-${String(i).padStart(2, '0')}`);
  // 12 sites and the server share this event loop: a loaded machine must not look like dead sites
  const h = await server(names, { rounds: 2, heartbeat_timeout_s: 60, final_average_rounds: 1 }, captureLogs(), BIG); // the last global is round 2's FedAvg
  const engines = names.map((_, i) => engine(i, { layout: BIG }));
  const clients = names.map((s, i) => client(h.port, s, engines[i]!));
  const res = await h.done;
  await Promise.all(clients.map((c) => c.done));
  for (const r of res.history) assert.deepEqual(r.fit!.accepted, names);
  const expected = referenceFedAvg(engines.map((e) => ({ weights: e.fits.at(-1)!.weights, numExamples: e.fits.at(-1)!.numExamples })));
  for (const [n, e] of expected) assertClose(h.coordinator.globalWeights.get(n)!.data as Float32Array, e, n);
});

test('fault: server killed between a round\'s folder and its state file, then --resume: the round is redone, nothing lost', { timeout: 90_000 }, async () => {
  const dir = await tempDir();
  const out = join(dir, 'out');
  await writeSafetensors(join(dir, 'initial.safetensors'), tinyDecoder(52));
  const cfg = (listen: string, resume: boolean) => ({
    listen, rounds: 3, min_available_clients: 2, min_fit_clients: 2, evaluate_every: 0, heartbeat_interval_s: 0.3, heartbeat_timeout_s: 5,
    long_poll_s: 1, round_timeout_s: 30, base_model_hash: FAKE_BASE_HASH, initial_decoder: join(dir, 'initial.safetensors'), out_dir: out,
    resume, sites: sitesConfig(['a', 'b']), metrics: null, shutdown_grace_s: 3, strategy: { name: 'fedadam', eta: 0.05 },
  });
  const file = join(dir, 'server.json');
  await writeFile(file, JSON.stringify(cfg('127.0.0.1:0', false)));
  const first = spawnHelper('fed-server-proc.ts', [file], { FEDSAM_TEST_CRASH_BEFORE_STATE: '2' });
  cleanups.push(() => first.proc.kill('SIGKILL'));
  const { port } = (await first.waitFor((m) => m.event === 'listening')) as { port: number };
  const engines = [engine(1, { fitDelayMs: 200 }), engine(2, { fitDelayMs: 200 })];
  const clients = ['a', 'b'].map((s, i) => client(port, s, engines[i]!));
  await first.exited; // killed itself in round 2, after rounds/round-000002 and before state.json
  const state = JSON.parse(await readFile(join(out, 'state.json'), 'utf8'));
  assert.equal(state.round, 1, 'state.json still points at round 1');
  await readSafetensors(join(out, 'rounds', 'round-000002', 'model.safetensors')); // the orphan folder is there

  await writeFile(file, JSON.stringify(cfg(`127.0.0.1:${port}`, true)));
  const second = spawnHelper('fed-server-proc.ts', [file]);
  cleanups.push(() => second.proc.kill('SIGKILL'));
  assert.equal((await second.waitFor((m) => m.event === 'listening')).round, 1);
  await second.waitFor((m) => m.event === 'done', 60_000);
  await Promise.all(clients.map((c) => c.done));
  const final = JSON.parse(await readFile(join(out, 'state.json'), 'utf8'));
  assert.equal(final.round, 3);
  assert.deepEqual(final.history.map((r: { round: number }) => r.round), [1, 2, 3]);
  assert.equal(second.messages.filter((m) => m.event === 'round').map((m) => m.round).join(), '2,3');
  // round 2 was trained again on round 1's global
  const g1 = (await readSafetensors(join(out, 'rounds', 'round-000001', 'model.safetensors'))).tensors;
  for (const e of engines) {
    const last2 = e.fits.filter((f) => f.round === 2).at(-1)!;
    for (const [n, t] of g1) assertClose(last2.global.get(n)!.data as Float32Array, t.data as Float32Array, `round 2 global ${n}`);
  }
});

/** Per element over sorted site values: median (odd K) or mean after cutting floor(beta K) at each end. */
function robustReference(ups: Array<Map<string, HostTensor>>, kind: 'median' | 'trimmed', beta = 0): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const name of ups[0]!.keys()) {
    const n = ups[0]!.get(name)!.data.length;
    const r = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const v = ups.map((u) => u.get(name)!.data[i] as number).sort((a, b) => a - b);
      if (kind === 'median') r[i] = v[v.length >> 1]!;
      else {
        const cut = Math.floor(beta * v.length);
        const kept = v.slice(cut, v.length - cut);
        r[i] = kept.reduce((a, b) => a + b, 0) / kept.length;
      }
    }
    out.set(name, r);
  }
  return out;
}

for (const [strategy, kind] of [[{ name: 'median' }, 'median'], [{ name: 'trimmed_mean', beta: 0.2 }, 'trimmed']] as const) {
  test(`fault: ${strategy.name} end to end over gRPC, with one site sending garbage weights`, { timeout: 60_000 }, async () => {
    const names = ['a', 'b', 'c', 'd', 'e'];
    const h = await server(names, { strategy });
    // site e is an outlier (target 50): the robust strategies must not follow it
    const engines = names.map((_, i) => (i === 4 ? fakeEngine({ target: 50, delta: 0, numExamples: 1e6 }) : engine(i)));
    const clients = names.map((s, i) => client(h.port, s, engines[i]!));
    const res = await h.done;
    await Promise.all(clients.map((c) => c.done));
    assert.deepEqual(res.history[0]!.fit!.accepted, names);
    const expected = robustReference(engines.map((e) => e.fits[0]!.weights), kind, 0.2);
    for (const [n, e] of expected) {
      const g = h.coordinator.globalWeights.get(n)!.data as Float32Array;
      assertClose(g, e, n);
      for (const v of g) assert.ok(Math.abs(v) < 2, `${n}: ${v} follows the outlier`);
    }
  });
}

test('fault: a site whose training produces NaN, and one whose training hangs, abandon their tasks; the round goes on', { timeout: 60_000 }, async () => {
  const logs = captureLogs();
  const h = await server(['a', 'b', 'nan', 'hang'], { min_fit_clients: 2, round_timeout_s: 60 }, logs);
  const t0 = Date.now();
  const clients = [
    client(h.port, 'a', engine(1)), client(h.port, 'b', engine(2)),
    client(h.port, 'nan', engine(3, { nan: true })),
    client(h.port, 'hang', engine(4, { hang: true }), { fitTimeoutMs: 1500 }),
  ];
  const res = await h.done;
  await Promise.all(clients.map((c) => c.done));
  const fit = res.history[0]!.fit!;
  assert.deepEqual(fit.accepted, ['a', 'b']);
  assert.match(fit.failed.nan!, /abandoned: local training produced a non-finite value/);
  assert.match(fit.failed.hang!, /abandoned: local training failed: local training did not finish within 1.5 s/);
  assert.ok((Date.now() - t0) / 1000 < 20, `the round did not wait for its 60 s timeout (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
});
