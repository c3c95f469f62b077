// Site identity by certificate over real TLS sockets: startup kits from `provision`, a server process that
// requires client certificates, sites that join with nothing but their kit; a certificate claiming another site,
// one from another CA, an expired one and a revoked one (after SIGHUP) are refused.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { join } from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { provision } from '@fedsam/server/pki/provision';
import { issueSiteCertificate } from '@fedsam/server/pki/certificates';
import { loadServerConfig } from '@fedsam/server/config';
import { writeSafetensors } from '@fedsam/shared/safetensors';
import { runClient } from '@fedsam/client/daemon/client';
import { Connection } from '@fedsam/client/daemon/connection';
import { loadSiteConfig } from '@fedsam/client/daemon/siteConfig';
import { manifestOfLayout } from '@fedsam/shared/transfer/manifest';
import { fakeEngine, FAKE_BASE_HASH, tinyDecoder, tinyLayout } from './helpers/fake-engine.ts';
import { quietLogger, runFedsam, spawnHelper, tempDir } from './helpers/fed-harness.ts';

const cleanups: Array<() => unknown> = [];
after(async () => {
  for (const c of cleanups.splice(0)) await c();
});

const joinReq = (site = '') => ({ site, base_model_hash: FAKE_BASE_HASH, decoder: manifestOfLayout(tinyLayout()), client_version: 'test' });

async function code(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
    return { code: status.OK, details: '' };
  } catch (e) {
    return { code: (e as ServiceError).code, details: (e as ServiceError).details };
  }
}

test('startup kits: sites join by certificate alone; wrong CA, expired, another site\'s name and revoked certificates are refused', { timeout: 120_000 }, async () => {
  const dir = await tempDir();
  const kits = join(dir, 'kits');
  await provision({ out: kits, sites: ['a', 'b', 'c'], serverHost: 'localhost' });
  const other = join(dir, 'other');
  await provision({ out: other, sites: ['a'], serverHost: 'localhost' });
  for (const f of ['a/site.key', 'server/server.key', 'ca/ca.key']) assert.equal((await stat(join(kits, f))).mode & 0o777, 0o600, `${f} is 0600`);

  // The server from the kit's server.yaml, on an ephemeral loopback port, with the test's fake model.
  const cfg = await loadServerConfig(join(kits, 'server', 'server.yaml'), {
    listen: '127.0.0.1:0', base_model: null, base_model_hash: FAKE_BASE_HASH, initial_decoder: join(dir, 'initial.safetensors'),
    out_dir: join(dir, 'out'), rounds: 1, min_available_clients: 2, min_fit_clients: 2, evaluate_every: 0, long_poll_s: 1, metrics: null,
    shutdown_grace_s: 1,
  });
  assert.equal(cfg.tls?.client_ca, join(kits, 'server', 'ca.pem'));
  assert.ok(cfg.sites.every((s) => s.token_sha256 === null), 'no tokens in a provisioned server.yaml');
  await writeSafetensors(join(dir, 'initial.safetensors'), tinyDecoder(41));
  const cfgFile = join(dir, 'server.json');
  await writeFile(cfgFile, JSON.stringify(cfg));
  const server = spawnHelper('fed-server-proc.ts', [cfgFile]);
  cleanups.push(() => server.proc.kill('SIGKILL'));
  const { port } = (await server.waitFor((m) => m.event === 'listening')) as { port: number };
  const address = `localhost:${port}`;
  const site = async (name: string, root = kits) => loadSiteConfig(join(root, name, 'site.yaml'), { server: address });
  const conn = async (name: string, root = kits, tlsOver: Record<string, string> = {}) => {
    const c = await site(name, root);
    const k = new Connection({ server: c.server, tls: { ca: c.tls!.ca!, cert: c.tls!.cert!, key: c.tls!.key!, ...tlsOver }, rpcTimeoutMs: 5000 });
    cleanups.push(() => k.close());
    return k;
  };

  // another CA: the TLS handshake fails (the server does not know the CA; nor the site the server's)
  const stranger = await conn('a', other, { ca: join(kits, 'a', 'ca.pem') });
  assert.equal((await code(stranger.join(joinReq()))).code, status.UNAVAILABLE);
  // expired (right CA): the handshake fails
  const ca = { cert: await readFile(join(kits, 'ca', 'ca.pem'), 'utf8'), key: await readFile(join(kits, 'ca', 'ca.key'), 'utf8'), serial: '' };
  const expired = await issueSiteCertificate(ca, 'b', { notBefore: new Date(Date.now() - 10 * 864e5), notAfter: new Date(Date.now() - 864e5) });
  await writeFile(join(dir, 'expired.pem'), expired.cert);
  await writeFile(join(dir, 'expired.key'), expired.key);
  const old = await conn('b', kits, { cert: join(dir, 'expired.pem'), key: join(dir, 'expired.key') });
  assert.equal((await code(old.join(joinReq()))).code, status.UNAVAILABLE);
  // a's certificate claiming b
  const liar = await conn('a');
  const claim = await code(liar.join(joinReq('b')));
  assert.equal(claim.code, status.PERMISSION_DENIED, claim.details);
  assert.match(claim.details, /certificate belongs to site a, not to "b"/);
  // c joins by certificate, then is revoked: its live connection is refused at the next call, a new one at the handshake
  const c = await conn('c');
  assert.equal((await c.join(joinReq('c'))).site, 'c');
  await provision({ out: kits, revoke: ['c'] });
  server.proc.kill('SIGHUP');
  await server.waitFor((m) => m.event === 'reloaded');
  const hb = await code(c.heartbeat());
  assert.equal(hb.code, status.UNAUTHENTICATED, hb.details);
  assert.match(hb.details, /revoked/);
  const again = await conn('c');
  assert.equal((await code(again.join(joinReq('c')))).code, status.UNAVAILABLE);

  // a and b run a round with nothing but their kits (no token anywhere)
  const clients = await Promise.all(['a', 'b'].map(async (name, i) => {
    const s = await site(name);
    return runClient({
      server: s.server, site: s.site!, tls: { ca: s.tls!.ca!, cert: s.tls!.cert!, key: s.tls!.key! }, logger: quietLogger(),
      engine: fakeEngine({ target: 0.1 * (i + 1), delta: 1, numExamples: 5 }), backoff: { initialMs: 50, maxMs: 300 },
    });
  }));
  const done = await server.waitFor((m) => m.event === 'done', 60_000);
  assert.equal(done.round, 1);
  const results = await Promise.all(clients.map((x) => x.done));
  assert.deepEqual(results.map((r) => [r.site, r.roundsTrained]), [['a', [1]], ['b', [1]]]);
});

test('from the command line: fedsam provision makes and revokes kits, fedsam client --config reads a kit', { timeout: 180_000 }, async () => {
  const kits = join(await tempDir(), 'kits');
  const made = await runFedsam(['provision', '--out', kits, '--sites', 'a,b', '--sites', 'c', '--server-host', 'localhost:9443']);
  assert.equal(made.code, 0, made.stderr);
  for (const name of ['a', 'b', 'c']) {
    const y = parseYaml(await readFile(join(kits, name, 'site.yaml'), 'utf8'));
    assert.deepEqual(y, { server: 'localhost:9443', site: name, tls: { ca: 'ca.pem', cert: 'site.pem', key: 'site.key' } });
    assert.equal((await stat(join(kits, name, 'site.key'))).mode & 0o777, 0o600);
  }
  const server = parseYaml(await readFile(join(kits, 'server', 'server.yaml'), 'utf8'));
  assert.deepEqual(server.sites, [{ name: 'a' }, { name: 'b' }, { name: 'c' }]);
  assert.deepEqual(server.tls, { cert: 'server.pem', key: 'server.key', client_ca: 'ca.pem', crl: 'crl.pem' });
  assert.equal(server.listen, '0.0.0.0:9443');

  const nothing = await runFedsam(['provision', '--out', kits]);
  assert.equal(nothing.code, 1);
  assert.match(nothing.stderr, /nothing to do/);
  // the kit is read (its relative paths from its folder, the certificate as credentials); what is missing is named
  const noData = await runFedsam(['client', '--config', join(kits, 'a', 'site.yaml')]);
  assert.equal(noData.code, 1);
  assert.match(noData.stderr, /no dataset: pass --data/);
  // flags override the file, and go through the same schema
  const badServer = await runFedsam(['client', '--config', join(kits, 'a', 'site.yaml'), '--server', 'no-port', '--data', kits]);
  assert.equal(badServer.code, 1);
  assert.match(badServer.stderr, /server: expected host:port/);
  const noCredentials = await runFedsam(['client', '--server', 'localhost:1', '--data', kits]);
  assert.match(noCredentials.stderr, /no credentials/);

  const revoked = await runFedsam(['provision', '--out', kits, '--revoke', 'b']);
  assert.equal(revoked.code, 0, revoked.stderr);
  assert.match(revoked.stdout, /revoked b/);
  const issued = JSON.parse(await readFile(join(kits, 'ca', 'issued.json'), 'utf8')) as { revoked: Array<{ site: string }> };
  assert.deepEqual(issued.revoked.map((r) => r.site), ['b']);
  const unknown = await runFedsam(['provision', '--out', kits, '--revoke', 'zed']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /no certificate was issued to a site of that name/);
});
