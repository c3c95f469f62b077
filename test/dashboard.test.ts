// The dashboard's HTTP side (state, server-sent events, loopback Host check, TLS + token) and the federation state
// it serves, without a browser (test/dashboard-browser.test.ts drives the pages in chromium).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DashboardConfigError, startDashboard } from '@fedsam/shared/web/dashboardServer';
import { isLoopbackHost, parseHostPort } from '@fedsam/shared/web/address';
import { FederationView } from '@fedsam/server/dashboard/federationView';
import type { RoundRecord } from '@fedsam/server/state';

const PAGE = new URL('../server/src/dashboard/page/', import.meta.url);

function get(url: string, headers: Record<string, string> = {}, ca?: Buffer): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const u = new URL(url);
  const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, { headers, ca, servername: 'localhost' });
  return new Promise((resolve, reject) => {
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('addresses: HOST:PORT, and which hosts are loopback', () => {
  assert.deepEqual(parseHostPort('127.0.0.1:8090', 'x'), { host: '127.0.0.1', port: 8090 });
  assert.deepEqual(parseHostPort('[::1]:0', 'x'), { host: '::1', port: 0 });
  assert.throws(() => parseHostPort('8090', '--dashboard'), /--dashboard expects HOST:PORT/);
  for (const h of ['127.0.0.1', '127.5.0.1', '::1', 'localhost']) assert.ok(isLoopbackHost(h), h);
  for (const h of ['0.0.0.0', '::', '10.0.0.1', 'example.org']) assert.ok(!isLoopbackHost(h), h);
});

test('dashboard on loopback: page, /api/state, live events, and no other Host', async () => {
  let n = 0;
  const dash = await startDashboard({ listen: '127.0.0.1:0', assets: [PAGE], state: () => ({ round: n }), throttleMs: 10 });
  try {
    const page = await get(dash.url);
    assert.equal(page.status, 200);
    assert.match(page.body, /<script type="module" src="\/assets\/federation.js">/);
    assert.match(String(page.headers['content-security-policy']), /default-src 'self'/);
    assert.equal((await get(`${dash.url}assets/chart.js`)).status, 200, 'shared assets are served');
    assert.equal((await get(`${dash.url}assets/../../package.json`)).status, 404);
    assert.deepEqual(JSON.parse((await get(`${dash.url}api/state`)).body), { round: 0 });
    // a page from elsewhere, reaching us through DNS rebinding, sends its own Host
    assert.equal((await get(`${dash.url}api/state`, { host: `evil.example:${dash.port}` })).status, 421);
    // server-sent events: the state at once, then after each notify
    const frames: string[] = [];
    const req = httpRequest(`${dash.url}api/events`);
    const got = new Promise<void>((resolve) => {
      req.on('response', (res) => {
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          frames.push(...d.split('\n\n').filter((f) => f.includes('data:')));
          if (frames.length === 1) { n = 7; dash.notify(); }
          if (frames.length >= 2) resolve();
        });
      });
    });
    req.end();
    await got;
    assert.match(frames[0]!, /event: state\ndata: \{"round":0\}/);
    assert.match(frames[1]!, /data: \{"round":7\}/);
    req.destroy();
  } finally {
    await dash.close();
  }
});

test('dashboard off loopback needs TLS; with TLS and a token, nothing without it', async (t) => {
  await assert.rejects(startDashboard({ listen: '0.0.0.0:0', assets: [PAGE], state: () => ({}) }), (e: Error) => e instanceof DashboardConfigError && /TLS/.test(e.message));
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
  } catch {
    t.skip('openssl not installed (needed to make a test certificate)');
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-dash-tls-'));
  const key = join(dir, 'key.pem'), cert = join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
    '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
  const token = 'correct horse battery staple';
  await writeFile(join(dir, 'token'), token);
  const ca = await import('node:fs').then((fs) => fs.readFileSync(cert));
  const dash = await startDashboard({ listen: '127.0.0.1:0', assets: [PAGE], state: () => ({ secret: 42 }), tls: { cert, key }, token });
  try {
    assert.match(dash.url, /^https:\/\/127\.0\.0\.1:\d+\/$/, 'a given token is not shown in the address');
    assert.equal((await get(`${dash.url}api/state`, {}, ca)).status, 401);
    assert.equal((await get(`${dash.url}api/state`, { authorization: 'Bearer wrong' }, ca)).status, 401);
    const ok = await get(`${dash.url}api/state`, { authorization: `Bearer ${token}` }, ca);
    assert.deepEqual([ok.status, JSON.parse(ok.body)], [200, { secret: 42 }]);
    // ?token= once: a cookie and a redirect to the address without it
    const first = await get(`${dash.url}?token=${encodeURIComponent(token)}`, {}, ca);
    assert.equal(first.status, 303);
    assert.equal(first.headers.location, '/');
    const cookie = String(first.headers['set-cookie']).split(';')[0]!;
    assert.match(String(first.headers['set-cookie']), /HttpOnly; Secure; SameSite=Strict/);
    assert.equal((await get(dash.url, { cookie }, ca)).status, 200);
  } finally {
    await dash.close();
  }
});

test('federation state: rounds, sites, refusals, bytes, the box baseline', () => {
  let t = 1_000_000;
  const seen = new Map<string, number>();
  const v = new FederationView({ strategy: 'fedavg', totalRounds: 2, sites: ['a', 'b'], lastSeen: (s) => seen.get(s), now: () => t });
  let changes = 0;
  v.on('change', () => changes++);
  v.siteJoined('a');
  v.siteJoined('b');
  seen.set('a', t);
  const evaluation = (round: number, dice: number): RoundRecord => ({
    round, evaluate: { sampled: ['a', 'b'], failed: {}, num_examples: 20, metrics: { dice, box_dice: 0.44 }, duration_seconds: 1, global_version: 'v',
      sites: { a: { num_examples: 10, metrics: { dice: dice / 2 } }, b: { num_examples: 10, metrics: { dice: dice * 1.5 } } } },
  });
  v.phaseStarted('evaluate', 0);
  v.evaluated(evaluation(0, 0.03));
  assert.equal(v.snapshot().rounds[0]!.mean_personal_dice, undefined, 'no Ditto: no personal Dice');
  v.phaseStarted('fit', 1);
  v.taskSent('a', 'fit', 1);
  v.taskSent('b', 'fit', 1);
  v.downloaded('a', 1000);
  assert.equal(v.snapshot().sites[0]!.state, 'training');
  v.progress('a', 0.5, 'epoch 1/2');
  v.uploadStarted('b', 1);
  v.refused('b', 1, 'bad_shape', 'update manifest refused: shape');
  v.transferred('in', 2000);
  v.updateAccepted('a', 1);
  v.dropped('b', 1, 'no answer within 600.0 s');
  v.roundCompleted({ round: 1, fit: { attempts: 1, sampled: ['a', 'b'], accepted: ['a'], failed: { b: 'no answer' }, num_examples: 10, metrics: {}, sites: {}, aggregation_seconds: 0.004, duration_seconds: 9, global_version: 'w' } });
  t += 5000;
  const s = v.snapshot();
  assert.equal(s.round, 1);
  assert.equal(s.completed_round, 1);
  assert.equal(s.phase, 'fit');
  assert.deepEqual(s.sites.map((x) => [x.name, x.state]), [['a', 'done'], ['b', 'dropped']]);
  assert.equal(s.sites[0]!.rounds_trained, 1);
  assert.equal(s.sites[0]!.last_heartbeat, new Date(1_000_000).toISOString());
  assert.deepEqual(s.sites[1]!.refusals.map((r) => [r.round, r.reason]), [[1, 'bad_shape']]);
  assert.deepEqual(s.rounds.map((r) => [r.round, r.mean_dice, r.sites.a?.dice ?? null]), [[0, 0.03, 0.015], [1, null, null]]);
  // with Ditto the sites report their personal models too
  v.evaluated({ round: 1, evaluate: { sampled: ['a'], failed: {}, num_examples: 10, metrics: { dice: 0.5, personal_dice: 0.6 }, duration_seconds: 1, global_version: 'w',
    sites: { a: { num_examples: 10, metrics: { dice: 0.5, personal_dice: 0.6 } } } } });
  assert.equal(v.snapshot().rounds[1]!.mean_personal_dice, 0.6);
  assert.equal(v.snapshot().rounds[1]!.sites.a!.personal_dice, 0.6);
  assert.deepEqual([s.rounds[1]!.bytes_out, s.rounds[1]!.bytes_in, s.rounds[1]!.aggregation_seconds], [1000, 2000, 0.004]);
  assert.deepEqual(s.bytes, { in: 2000, out: 1000 });
  assert.equal(s.box_baseline, 0.44);
  assert.equal(s.elapsed_seconds, 5);
  assert.ok(changes >= 12);
  v.finished();
  assert.equal(v.snapshot().phase, 'finished');
  v.stopped();
  assert.equal(v.snapshot().phase, 'finished', 'a finished run stays finished when the server stops');
});
