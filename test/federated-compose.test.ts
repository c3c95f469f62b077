// docker-compose.yml: an aggregator and three GPU site clients from one image (Dockerfile).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const COMPOSE = fileURLToPath(new URL('../docker-compose.yml', import.meta.url));

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  environment?: Record<string, string>;
  volumes?: Array<string | { source: string; target: string }>;
  deploy?: { resources?: { reservations?: { devices?: Array<{ driver: string; count?: number; capabilities: string[] }> } } };
  secrets?: Array<{ source: string; target: string }>;
}

function checkTopology(doc: { services: Record<string, Service> }): void {
  const s = doc.services;
  assert.deepEqual(Object.keys(s).sort(), ['aggregator', 'site-a', 'site-b', 'site-c']);
  assert.deepEqual(s.aggregator!.command, ['server']);
  const image = s.aggregator!.image;
  const dataVolumes = new Set<string>();
  for (const name of ['site-a', 'site-b', 'site-c']) {
    const site = s[name]!;
    assert.equal(site.image, image, `${name} runs the aggregator's image`);
    assert.deepEqual(site.command, ['client']);
    const env = site.environment!;
    assert.equal(env.FEDSAM_BACKEND, 'gpu');
    assert.equal(env.FEDSAM_SITE, name);
    assert.equal(env.FEDSAM_SERVER, 'aggregator:8080');
    const gpu = site.deploy?.resources?.reservations?.devices?.[0];
    assert.ok(gpu, `${name} reserves a GPU`);
    assert.equal(gpu.driver, 'nvidia');
    assert.ok(gpu.capabilities.includes('gpu'));
    const data = (site.volumes ?? []).map((v) => (typeof v === 'string' ? v : `${v.source}:${v.target}`)).find((v) => /:\/data(:|$)/.test(v));
    assert.ok(data, `${name} mounts its data at /data`);
    dataVolumes.add(data.split(':')[0]!);
  }
  assert.equal(dataVolumes.size, 3, 'each site has its own data volume');
}

test('docker-compose.yml: aggregator + three GPU sites from one image, configured by environment', async () => {
  const doc = parse(await readFile(COMPOSE, 'utf8'), { merge: true });
  checkTopology(doc);
  const docker = await readFile(fileURLToPath(new URL('../Dockerfile', import.meta.url)), 'utf8');
  assert.match(docker, /^FROM node:20-bookworm-slim/m);
  assert.match(docker, /npm ci/);
  assert.match(docker, /ENTRYPOINT \["node", "--initial-old-space-size=64", "bin\/fedsam\.mjs"\]/);
});

const hasCompose = spawnSync('docker-compose', ['version'], { stdio: 'ignore' }).status === 0;

test('docker-compose config accepts the file', { skip: hasCompose ? false : 'docker-compose is not installed (Debian package docker-compose); skipping its own validation' }, () => {
  const out = execFileSync('docker-compose', ['-f', COMPOSE, 'config'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, SITE_A_TOKEN_SHA256: 'a'.repeat(64) } });
  const doc = parse(out);
  checkTopology(doc);
  assert.equal(doc.services.aggregator.environment.FEDSAM_SITES.split(',')[0], `site-a:${'a'.repeat(64)}`);
});
