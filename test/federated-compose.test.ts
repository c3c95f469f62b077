// The compose files, read without a Docker engine: docker-compose.yml (the CPU simulation), its host-network test
// override, and docker-compose.gpu.yml (the GPU deployment). test/docker/compose-sim.sh runs the simulation for real.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const file = (p: string) => fileURLToPath(new URL(`../${p}`, import.meta.url));
const SIM = file('docker-compose.yml');
const HOST = file('docker/compose.host.yml');
const GPU = file('docker-compose.gpu.yml');
const SITES = ['site-1', 'site-2', 'site-3'];

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  environment?: Record<string, string>;
  volumes?: Array<string | { source: string; target: string }>;
  network_mode?: string;
  depends_on?: Record<string, { condition: string }> | string[];
  deploy?: { resources?: { reservations?: { devices?: Array<{ driver: string; count?: number; capabilities: string[] }> } } };
  secrets?: Array<{ source: string; target: string }>;
}
type Doc = { services: Record<string, Service> };

const load = async (p: string): Promise<Doc> => parse(await readFile(p, 'utf8'), { merge: true });
const volumesOf = (s: Service) => (s.volumes ?? []).map((v) => (typeof v === 'string' ? v : `${v.source}:${v.target}`));
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** The simulation: synth once, then the aggregator and three sites on the built-in model, no GPU, tokens that match. */
function checkSimulation(doc: Doc): void {
  const s = doc.services;
  assert.deepEqual(Object.keys(s).sort(), ['aggregator', ...SITES, 'synth']);
  const image = s.aggregator!.image;
  for (const svc of Object.values(s)) {
    assert.equal(svc.image, image, 'every service runs the one image');
    assert.ok(svc.build, 'every service can build it (no registry pull)');
    assert.equal(svc.deploy, undefined, 'no GPU or other device reservation');
  }
  assert.equal(s.synth!.command![0], 'synth');
  assert.ok(volumesOf(s.synth!).some((v) => /:\/data(:rw)?$/.test(v)), 'synth writes the data volume');
  const agg = s.aggregator!.environment!;
  assert.equal(agg.FEDSAM_BASE_MODEL, 'fedsam-tiny');
  assert.ok(agg.FEDSAM_EXPORT_MERGED, 'the aggregator writes the final model');
  const registered = new Map(agg.FEDSAM_SITES!.split(',').map((p) => p.trim().split(':') as [string, string]));
  for (const name of SITES) {
    const site = s[name]!;
    assert.equal(site.command![0], 'client');
    assert.deepEqual((site.depends_on as Record<string, { condition: string }>).synth, { condition: 'service_completed_successfully' });
    const env = site.environment!;
    assert.equal(env.FEDSAM_SITE, name);
    assert.equal(env.FEDSAM_DATA, `/data/${name}`);
    assert.equal(env.FEDSAM_BACKEND, undefined, 'the backend policy picks a CPU backend');
    assert.equal(registered.get(name), sha256(env.FEDSAM_TOKEN!), `${name}'s token hashes to the aggregator's entry`);
    assert.ok(volumesOf(site).some((v) => /:\/data:ro$/.test(v)), `${name} reads the data volume`);
  }
}

/** The test override: host networking everywhere, everything on 127.0.0.1. */
function checkHostNetwork(doc: Doc): void {
  for (const [name, svc] of Object.entries(doc.services)) assert.equal(svc.network_mode, 'host', `${name} uses the host's network`);
  assert.match(doc.services.aggregator!.environment!.FEDSAM_LISTEN!, /^127\.0\.0\.1:/);
  assert.equal(doc.services.aggregator!.environment!.FEDSAM_METRICS_HOST, '127.0.0.1');
  assert.match(doc.services.aggregator!.environment!.FEDSAM_DASHBOARD!, /^127\.0\.0\.1:/);
  for (const name of SITES) assert.match(doc.services[name]!.environment!.FEDSAM_SERVER!, /^127\.0\.0\.1:/);
}

/** The deployment: an aggregator and three GPU sites, each with its own data volume and token secret. */
function checkDeployment(doc: Doc): void {
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
    const data = volumesOf(site).find((v) => /:\/data(:|$)/.test(v));
    assert.ok(data, `${name} mounts its data at /data`);
    dataVolumes.add(data.split(':')[0]!);
  }
  assert.equal(dataVolumes.size, 3, 'each site has its own data volume');
}

test('docker-compose.yml: the CPU simulation (synth, aggregator, three sites) from one image', async () => {
  checkSimulation(await load(SIM));
  checkHostNetwork(await load(HOST));
  const docker = await readFile(file('Dockerfile'), 'utf8');
  assert.match(docker, /^ARG BASE_IMAGE=node:20-bookworm-slim$/m);
  assert.match(docker, /^FROM \$\{BASE_IMAGE\} AS deps$/m);
  assert.match(docker, /npm ci/);
  assert.match(docker, /ENTRYPOINT \["node", "--initial-old-space-size=64", "bin\/fedsam\.mjs"\]/);
});

test('docker-compose.gpu.yml: aggregator + three GPU sites, configured by environment', async () => {
  checkDeployment(await load(GPU));
});

const hasCompose = spawnSync('docker-compose', ['version'], { stdio: 'ignore' }).status === 0;
const compose = (...args: string[]) => parse(execFileSync('docker-compose', args, {
  cwd: ROOT, encoding: 'utf8', env: { ...process.env, SITE_A_TOKEN_SHA256: 'a'.repeat(64), FEDSAM_TEST_GRPC_PORT: '18080' },
}));

test('docker-compose config accepts the files', { skip: hasCompose ? false : 'docker-compose is not installed (Debian package docker-compose); skipping its own validation' }, () => {
  const sim = compose('-f', SIM, 'config');
  checkSimulation(sim);
  const host = compose('-f', SIM, '-f', HOST, 'config');
  checkSimulation(host);
  checkHostNetwork(host);
  assert.equal(host.services.aggregator.build.network, 'host', 'the image builds on the host network too');
  const gpu = compose('-f', GPU, 'config');
  checkDeployment(gpu);
  assert.equal(gpu.services.aggregator.environment.FEDSAM_SITES.split(',')[0], `site-a:${'a'.repeat(64)}`);
});
