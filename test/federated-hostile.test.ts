// Hostile uploads over real gRPC (issue 13's findings), each reproduced with a raw grpc-js client that speaks only
// proto/fedsam.proto: idle header-less streams, floods of unread frames, a second stream from the same site, a
// lying example count, oversized and malformed messages, refusals that name no task of the site.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { runServer, type ServerHandle } from '@fedsam/server/server';
import { runClient } from '@fedsam/client/daemon/client';
import { fakeEngine, FAKE_BASE_HASH, referenceFedAvg, tinyDecoder, tinyLayout } from './helpers/fake-engine.ts';
import { captureLogs, quietLogger, sitesConfig, spawnHelper, tempDir, tokenFor, until } from './helpers/fed-harness.ts';
import { encode, layoutManifest, RawSite, rssMb, updateFrames, type RawUpload } from './helpers/raw-client.ts';

const LAYOUT = tinyLayout();
const MANIFEST = layoutManifest(LAYOUT);

// Whatever a failed test leaves open is closed at the end (the file must end by itself).
const cleanups: Array<() => unknown> = [];
after(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function serverFor(sites: string[], over: Record<string, unknown> = {}, logs = captureLogs()): Promise<ServerHandle> {
  const h = await runServer(
    {
      listen: '127.0.0.1:0', rounds: 1, min_available_clients: sites.length, min_fit_clients: sites.length, round_timeout_s: 60,
      long_poll_s: 1, evaluate_every: 0, base_model_hash: FAKE_BASE_HASH, out_dir: await tempDir(), sites: sitesConfig(sites),
      metrics: null, shutdown_grace_s: 1, ...over,
    },
    { logger: logs.logger, initialDecoder: tinyDecoder(31) },
  );
  cleanups.push(() => h.stop());
  return h;
}

/** A raw site that has joined and holds its fit task. */
async function rawSite(port: number, site: string): Promise<{ s: RawSite; task: Record<string, unknown> }> {
  const s = new RawSite(`127.0.0.1:${port}`, tokenFor(site));
  cleanups.push(() => s.close());
  const j = await s.join(site, FAKE_BASE_HASH, MANIFEST);
  assert.equal(j.code, status.OK, j.details);
  return { s, task: await s.task('fit') };
}

const headerOf = (task: Record<string, unknown>, numExamples = 10) => ({ task_id: String(task.task_id), round: Number(task.round), num_examples: numExamples });

test('finding 1: idle header-less upload streams of one site do not lock out another site (nor count against it)', { timeout: 60_000 }, async () => {
  const server = await serverFor(['mallory', 'site-b']);
  const [m, b] = await Promise.all([rawSite(server.port, 'mallory'), rawSite(server.port, 'site-b')]);
  // 16 streams that never send a frame (the upload permits are 4)
  const idle: RawUpload[] = Array.from({ length: 16 }, () => m.s.upload());
  await new Promise((r) => setTimeout(r, 300));
  // site-b's valid upload, 3 times in a row, each within 5 s
  for (let i = 0; i < 3; i++) {
    const up = b.s.upload(5000);
    await RawSite.pump(up, updateFrames(headerOf(b.task), LAYOUT, () => 0.1 * i));
    const r = await up.result;
    if (i === 0) assert.equal(r.code, status.OK, `site-b's upload: ${status[r.code]} ${r.details}`);
    else assert.equal(r.code, status.FAILED_PRECONDITION, `a second update of site-b is refused as a duplicate: ${r.details}`);
  }
  for (const u of idle) u.cancel();
  // mallory can still upload properly once its idle streams are gone
  await until(() => idle.every((u) => u.settled), 5000, 'idle streams ended');
  const up = m.s.upload(5000);
  await RawSite.pump(up, updateFrames(headerOf(m.task), LAYOUT, () => -0.1));
  assert.equal((await up.result).code, status.OK);
  const res = await server.done;
  assert.deepEqual(res.history[0]!.fit!.accepted, ['mallory', 'site-b']);
  m.s.close();
  b.s.close();
});

test('finding 2: 16 flooding streams of one site and 4 of each other site keep server RSS within +64 MB', { timeout: 90_000 }, async () => {
  const dir = await tempDir();
  const others = ['site-b', 'site-c', 'site-d'];
  const names = ['mallory', ...others, 'honest'];
  const cfgFile = join(dir, 'server.json');
  await writeFile(cfgFile, JSON.stringify({
    listen: '127.0.0.1:0', rounds: 1, min_available_clients: names.length, min_fit_clients: names.length, round_timeout_s: 60,
    long_poll_s: 1, evaluate_every: 0, base_model_hash: FAKE_BASE_HASH, initial_decoder: join(dir, 'initial.safetensors'),
    out_dir: join(dir, 'out'), sites: sitesConfig(names), metrics: null, shutdown_grace_s: 1,
  }));
  const { writeSafetensors } = await import('@fedsam/shared/safetensors');
  await writeSafetensors(join(dir, 'initial.safetensors'), tinyDecoder(32));
  const proc = spawnHelper('fed-server-proc.ts', [cfgFile]);
  const { port } = (await proc.waitFor((m) => m.event === 'listening')) as { port: number };
  try {
    const sites = await Promise.all(names.map((n) => rawSite(port, n)));
    const bySite = new Map(names.map((n, i) => [n, sites[i]!]));
    await new Promise((r) => setTimeout(r, 500));
    const idle = await rssMb(proc.proc.pid!);
    // A 1 MiB chunk frame, encoded once, sent again and again (no header: the server must never buffer these).
    const flood = encode('UpdateFrame', { chunk: { offset: 0, data: Buffer.alloc(1 << 20, 7) } });
    const floods = function* (n: number) {
      for (let i = 0; i < n; i++) yield flood;
    };
    const streams: RawUpload[] = [];
    // mallory: 4 idle streams first (before the fix they hold every upload permit), then 12 floods
    for (let i = 0; i < 4; i++) streams.push(bySite.get('mallory')!.s.upload());
    await new Promise((r) => setTimeout(r, 200));
    const pumps: Promise<void>[] = [];
    const open = (site: string) => {
      const u = bySite.get(site)!.s.upload();
      streams.push(u);
      pumps.push(RawSite.pump(u, floods(64), false));
    };
    for (let i = 0; i < 12; i++) open('mallory');
    for (const o of others) for (let i = 0; i < 4; i++) open(o);
    let peak = idle;
    const t0 = Date.now();
    while (Date.now() - t0 < 4000) {
      peak = Math.max(peak, await rssMb(proc.proc.pid!));
      await new Promise((r) => setTimeout(r, 100));
    }
    // meanwhile an honest site's upload goes through
    const h = bySite.get('honest')!;
    const up = h.s.upload(5000);
    await RawSite.pump(up, updateFrames(headerOf(h.task), LAYOUT, () => 0.2));
    const r = await up.result;
    peak = Math.max(peak, await rssMb(proc.proc.pid!));
    process.stdout.write(`# server RSS: idle ${idle.toFixed(1)} MB, peak under ${streams.length} hostile streams ${peak.toFixed(1)} MB (+${(peak - idle).toFixed(1)})\n`);
    assert.equal(r.code, status.OK, `honest upload during the flood: ${status[r.code]} ${r.details}`);
    assert.ok(peak - idle <= 64, `server RSS grew by ${(peak - idle).toFixed(1)} MB under hostile streams (limit +64 MB)`);
    for (const u of streams) u.cancel();
    await Promise.allSettled(pumps);
    for (const s of sites) s.s.close();
  } finally {
    proc.proc.kill('SIGKILL');
    await proc.exited;
  }
});

test('finding 3: a second upload stream of a site is refused without touching the upload in flight', { timeout: 60_000 }, async () => {
  const server = await serverFor(['site-b', 'site-c']);
  const [b, c] = await Promise.all([rawSite(server.port, 'site-b'), rawSite(server.port, 'site-c')]);
  const frames = updateFrames(headerOf(b.task), LAYOUT, () => 0.3);
  const first = b.s.upload(10_000);
  await RawSite.pump(first, frames.slice(0, 2), false); // header + first chunk, then a pause
  await new Promise((r) => setTimeout(r, 300));
  const second = b.s.upload(10_000);
  await RawSite.pump(second, frames);
  const r2 = await second.result;
  assert.notEqual(r2.code, status.OK, 'the duplicate stream is refused');
  await RawSite.pump(first, frames.slice(2));
  const r1 = await first.result;
  assert.equal(r1.code, status.OK, `the genuine upload: ${status[r1.code]} ${r1.details}`);
  const up = c.s.upload();
  await RawSite.pump(up, updateFrames(headerOf(c.task), LAYOUT, () => 0.5));
  assert.equal((await up.result).code, status.OK);
  const res = await server.done;
  assert.deepEqual(res.history[0]!.fit!.accepted, ['site-b', 'site-c']);
  b.s.close();
  c.s.close();
});

/** One round with two honest sites (400 and 600 examples) and a liar claiming 1e12 with every weight +1. */
async function lyingRound(over: Record<string, unknown>, honestWeights: [number, number]) {
  const logs = captureLogs();
  const server = await serverFor(['liar', 'site-a', 'site-b'], { evaluate_every: 1, ...over }, logs);
  const engines = [fakeEngine({ target: 0.2, delta: 1, numExamples: 400 }), fakeEngine({ target: -0.1, delta: 2, numExamples: 600 })];
  const clients = ['site-a', 'site-b'].map((site, i) => runClient({ server: `127.0.0.1:${server.port}`, token: tokenFor(site), site, engine: engines[i]!, logger: quietLogger() }));
  for (const c of clients) cleanups.push(() => c.stop());
  const liar = await rawSite(server.port, 'liar');
  const g0 = tinyDecoder(31);
  const lie = (name: string, i: number) => (g0.get(name)!.data[i] as number) + 1.0;
  const up = liar.s.upload();
  await RawSite.pump(up, updateFrames(headerOf(liar.task, 1e12), LAYOUT, lie));
  assert.equal((await up.result).code, status.OK);
  const ev = await liar.s.task('evaluate');
  const e = await liar.s.unary('SubmitEvaluation', 'EvaluationResult', { task_id: ev.task_id, round: ev.round, num_examples: 1e12, metrics: { dice: 0 } }, 'SubmitResponse');
  assert.equal(e.code, status.OK, e.details);
  const res = await server.done;
  await Promise.all(clients.map((c) => c.done));
  // The liar's share of the new global, per element: (global - honest mean) / (its upload - honest mean).
  const honest = referenceFedAvg(engines.map((x, i) => ({ weights: x.fits[0]!.weights, numExamples: honestWeights[i]! })));
  let share = 0;
  let n = 0;
  for (const [name, h] of honest) {
    const g = server.coordinator.globalWeights.get(name)!.data;
    for (let i = 0; i < h.length; i++) {
      share += ((g[i] as number) - h[i]!) / (lie(name, i) - h[i]!);
      n++;
    }
  }
  liar.s.close();
  const honestDice = engines.map((x) => x.evals.at(-1)!.result.metrics.dice!);
  return { share: share / n, dice: res.history.find((r) => r.round === 1)!.evaluate!.metrics.dice!, honestDice, logs };
}

test('finding 4: a site claiming 1e12 examples cannot take over FedAvg (nor FedAvgM) nor the evaluation metric', { timeout: 60_000 }, async () => {
  // default weighting (uniform): the liar weighs what every site weighs
  const u = await lyingRound({}, [1, 1]);
  assert.ok(Math.abs(u.share - 1 / 3) < 1e-3, `the liar's share of the global (uniform): ${u.share.toFixed(6)}`);
  const mean = (u.honestDice[0]! + u.honestDice[1]!) / 3;
  assert.ok(Math.abs(u.dice - mean) < 1e-9, `round dice ${u.dice}, expected ${mean} (the liar's 0 counted once)`);
  // capped at 1000 examples per site: the liar weighs 1000 against 400 + 600, and the clipping is logged by name
  const c = await lyingRound({ weighting: { policy: 'capped', max_examples: 1000 } }, [400, 600]);
  assert.ok(Math.abs(c.share - 0.5) < 1e-3, `the liar's share of the global (capped): ${c.share.toFixed(6)}`);
  assert.ok(c.dice > 0.3, `round dice (capped): ${c.dice}`);
  for (const kind of ['fit', 'evaluate']) {
    assert.ok(c.logs.find('weight_clipped', (l) => l.site === 'liar' && l.kind === kind && l.weight === 1000), `${kind} clipping logged`);
  }
  // declared sizes (registry) under FedAvgM (its server step on the weighted mean; learning rate 1 gives the mean
  // back in round 1): the liar weighs its declared 100 of 1100, whatever it reports
  const declared: Record<string, number> = { liar: 100, 'site-a': 400, 'site-b': 600 };
  const r = await lyingRound({
    weighting: { policy: 'registry' }, strategy: { name: 'fedavgm', server_learning_rate: 1, server_momentum: 0.9 },
    sites: sitesConfig(Object.keys(declared)).map((x) => ({ ...x, num_examples: declared[x.name] })),
  }, [400, 600]);
  assert.ok(Math.abs(r.share - 100 / 1100) < 1e-3, `the liar's share of the global (registry, fedavgm): ${r.share.toFixed(6)}`);
  const weighted = (400 * r.honestDice[0]! + 600 * r.honestDice[1]!) / 1100;
  assert.ok(Math.abs(r.dice - weighted) < 1e-9, `round dice (registry) ${r.dice}, expected ${weighted}`);
  assert.ok(r.logs.find('weight_clipped', (l) => l.site === 'liar' && l.policy === 'registry'), 'the report above the declaration is logged');
});

test('finding 5: oversized and malformed messages get their own status and reason; refusals naming no task of the site do not count against it', { timeout: 60_000 }, async () => {
  const logs = captureLogs();
  const server = await serverFor(['site-b', 'site-c'], { limits: { max_refusals_per_round: 3 } }, logs);
  const [b, c] = await Promise.all([rawSite(server.port, 'site-b'), rawSite(server.port, 'site-c')]);

  // a 5 MiB frame (the limit is 4 MiB)
  const big = b.s.upload();
  await RawSite.pump(big, [{ header: { ...headerOf(b.task), manifest: MANIFEST } }, { chunk: { offset: 0, data: Buffer.alloc(5 << 20) } }]);
  const rb = await big.result;
  assert.equal(rb.code, status.RESOURCE_EXHAUSTED, `${status[rb.code]} ${rb.details}`);
  await until(() => logs.lines.some((l) => l.site === 'site-b' && (l.event === 'update_refused' || l.event === 'request_refused')), 3000, 'the refusal is logged');
  const logged = logs.lines.filter((l) => l.event === 'update_refused' || l.event === 'request_refused');
  assert.ok(logged.every((l) => l.reason !== 'internal'), `logged as ${logged.map((l) => l.reason).join(', ')}`);

  // malformed protobuf: in an upload stream, and as a unary request
  const bad = b.s.upload();
  await RawSite.pump(bad, [Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01])]);
  const rm = await bad.result;
  assert.equal(rm.code, status.INVALID_ARGUMENT, `malformed frame: ${status[rm.code]} ${rm.details}`);
  const rj = await b.s.unaryBytes('Heartbeat', Buffer.from([0x08, 0x80]), 'HeartbeatResponse');
  assert.equal(rj.code, status.INVALID_ARGUMENT, `malformed unary request: ${status[rj.code]} ${rj.details}`);

  // updates for a round that is not open, more of them than max_refusals_per_round
  for (let i = 0; i < 5; i++) {
    const u = b.s.upload();
    await RawSite.pump(u, updateFrames({ ...headerOf(b.task), round: 7 }, LAYOUT, () => 0));
    assert.equal((await u.result).code, status.FAILED_PRECONDITION);
  }
  // site-b still has its task: its valid update is accepted
  const ok = b.s.upload();
  await RawSite.pump(ok, updateFrames(headerOf(b.task), LAYOUT, () => 0.4));
  const ro = await ok.result;
  assert.equal(ro.code, status.OK, `after refusals that named no task of site-b: ${status[ro.code]} ${ro.details}`);
  const uc = c.s.upload();
  await RawSite.pump(uc, updateFrames(headerOf(c.task), LAYOUT, () => 0.6));
  assert.equal((await uc.result).code, status.OK);
  const res = await server.done;
  assert.deepEqual(res.history[0]!.fit!.accepted, ['site-b', 'site-c']);
  b.s.close();
  c.s.close();
});

