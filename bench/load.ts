// Many sites against one aggregation server: N lightweight site clients (the real daemon loop over real gRPC,
// real downloads and uploads of the decoder, fake training: w = g + a small site-specific step) in a few child
// processes, against one server process, all on loopback. Measures the server's peak RSS and each round's time.
//
//   node --import tsx bench/load.ts [--sites 100] [--rounds 3] [--model tiny|vit-b] [--site-procs 2] [--evaluate] [--json]
//
// --model tiny: the built-in fedsam-tiny's decoder (191,292 parameters, 0.77 MB); vit-b: sam-vit-base's shapes
// (4,058,340 parameters, 16.2 MB) with pseudo-random values. Each site has its own connection (grpc-js would
// otherwise share one TCP connection between channels to the same address).
// Prints a table, or with --json one JSON object: sites, rounds, rounds_completed, accepted (per round),
// server_peak_rss_mb (VmHWM of the server process), server_idle_rss_mb (listening, before any site joined),
// round_seconds (per round, the server's own measure), wall_seconds.
import { readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { destination, pino } from 'pino';
import type { HostTensor } from '@fedsam/shared/safetensors';
import { writeSafetensors } from '@fedsam/shared/safetensors';
import { frozenEncodersHash } from '@fedsam/shared/checkpoint/baseModelHash';
import { hashToken } from '@fedsam/server/auth';
import { runServer } from '@fedsam/server/server';
import { runClient } from '@fedsam/client/daemon/client';
import type { LocalEngine } from '@fedsam/client/engine/localEngine';
import { spawnJsonLines, type Child } from '../test/helpers/fed-harness.ts';
import { lcgWeights, vitBaseDecoderShapes, withHeapFlag } from './common.ts';

const SCRIPT = fileURLToPath(import.meta.url);
const VITB_HASH = 'b16b00b5'.repeat(8);
const token = (site: string) => `load-token-${site}`;
const print = (m: Record<string, unknown>) => process.stdout.write(JSON.stringify(m) + '\n');

const { values: a } = parseArgs({
  options: {
    sites: { type: 'string', default: '100' },
    rounds: { type: 'string', default: '3' },
    model: { type: 'string', default: 'tiny' },
    'site-procs': { type: 'string', default: '2' },
    evaluate: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    // internal: the roles of the child processes
    role: { type: 'string' },
    config: { type: 'string' },
    server: { type: 'string' },
    names: { type: 'string' },
  },
});

async function tinyDecoder(): Promise<{ decoder: Map<string, HostTensor>; hash: string }> {
  const { tinySamWeights } = await import('@fedsam/shared/model/presets');
  const { weights } = await tinySamWeights();
  return { decoder: new Map([...weights].filter(([n]) => n.startsWith('mask_decoder.'))), hash: frozenEncodersHash(weights) };
}

async function modelOf(model: string): Promise<{ decoder: Map<string, HostTensor>; hash: string }> {
  if (model === 'tiny') return tinyDecoder();
  if (model === 'vit-b') return { decoder: lcgWeights(vitBaseDecoderShapes(), 3), hash: VITB_HASH };
  throw new Error(`--model: tiny or vit-b, not ${model}`);
}

/** Fake training: the global plus a small step that differs per site (real bytes, no compute). */
function engineFor(i: number, layout: Map<string, number[]>, hash: string): LocalEngine {
  return {
    baseModelHash: hash,
    decoderNames: () => new Map([...layout].map(([n, s]) => [n, [...s]])),
    async fit(global) {
      const weights = new Map<string, HostTensor>();
      const step = 1e-3 * ((i % 7) - 3);
      for (const [n, t] of global) {
        const g = t.data as Float32Array;
        const w = new Float32Array(g.length);
        for (let k = 0; k < g.length; k++) w[k] = g[k]! + step;
        weights.set(n, { dtype: 'float32', shape: [...t.shape], data: w });
      }
      return { weights, numExamples: 10 + (i % 5), metrics: { loss: 0.5 } };
    },
    async evaluate() {
      return { numExamples: 10, metrics: { dice: 0.5 + (i % 10) / 100 } };
    },
  };
}

// ------------------------------------------------------------------------------------------------ server role
async function serverRole(): Promise<void> {
  const cfg = JSON.parse(await readFile(a.config!, 'utf8'));
  const h = await runServer(cfg, { logger: pino({ level: 'warn' }, destination(2)) });
  print({ event: 'listening', port: h.port });
  h.coordinator.on('round', (r) => print({ event: 'round', round: r.round, seconds: r.fit!.duration_seconds, accepted: r.fit!.accepted.length, failed: Object.keys(r.fit!.failed).length, attempts: r.fit!.attempts }));
  process.once('SIGTERM', () => void h.stop('SIGTERM'));
  const res = await h.done;
  print({ event: 'done', round: res.round });
  process.exit(0);
}

// ------------------------------------------------------------------------------------------------- sites role
async function sitesRole(): Promise<void> {
  const { decoder, hash } = await modelOf(a.model!);
  const layout = new Map([...decoder].map(([n, t]) => [n, [...t.shape]]));
  const names = a.names!.split(',');
  const log = pino({ level: 'warn' }, destination(2));
  const handles = names.map((site) => runClient({
    server: a.server!, token: token(site), site, engine: engineFor(Number(site.slice(5)), layout, hash), logger: log,
    backoff: { initialMs: 200, maxMs: 2000 }, channelOptions: { 'grpc.use_local_subchannel_pool': 1 },
  }));
  const results = await Promise.all(handles.map((h) => h.done));
  print({ event: 'sites_done', trained: results.reduce((s, r) => s + r.roundsTrained.length, 0) });
  process.exit(0);
}

// -------------------------------------------------------------------------------------------------- main role
/** This script in another role, in a child process (its JSON lines read as the tests read their helpers'). */
const child = (args: string[]): Child => spawnJsonLines(SCRIPT, args, { execArgv: process.execArgv });
const event = (name: string) => (m: Record<string, unknown>) => m.event === name;

async function status(pid: number): Promise<{ rss: number; hwm: number }> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)?.[1] ?? 0) / 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

async function main(): Promise<void> {
  const sites = Number(a.sites);
  const rounds = Number(a.rounds);
  const procs = Math.max(1, Math.min(sites, Number(a['site-procs'])));
  const names = Array.from({ length: sites }, (_, i) => `site-${String(i).padStart(4, '0')}`);
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-load-'));
  const { decoder } = await modelOf(a.model!);
  const decoderMb = [...decoder.values()].reduce((s, t) => s + t.data.length * 4, 0) / 1e6;
  let initial: Record<string, unknown> = { base_model: 'fedsam-tiny' };
  if (a.model === 'vit-b') {
    await writeSafetensors(join(dir, 'initial.safetensors'), decoder);
    initial = { initial_decoder: join(dir, 'initial.safetensors'), base_model_hash: VITB_HASH };
  }
  const cfg = {
    listen: '127.0.0.1:0', rounds, min_available_clients: sites, min_fit_clients: sites, round_timeout_s: 900,
    evaluate_every: a.evaluate ? 1 : 0, heartbeat_interval_s: 5, heartbeat_timeout_s: 120, long_poll_s: 10,
    out_dir: join(dir, 'out'), keep_rounds: 1, metrics: null, shutdown_grace_s: 30, ...initial,
    sites: names.map((name) => ({ name, token_sha256: hashToken(token(name)) })),
  };
  await writeFile(join(dir, 'server.json'), JSON.stringify(cfg));
  const t0 = performance.now();
  const server = child(['--role', 'server', '--config', join(dir, 'server.json')]);
  const { port } = (await server.waitFor(event('listening'), 60_000)) as { port: number };
  const pid = server.proc.pid!;
  const idle = (await status(pid)).rss; // listening, no site yet
  let peak = 0;
  const sampler = setInterval(() => void status(pid).then((s) => (peak = Math.max(peak, s.hwm)), () => undefined), 200);
  const per = Math.ceil(sites / procs);
  const siteProcs = Array.from({ length: procs }, (_, p) => child(['--role', 'sites', '--model', a.model!, '--server', `127.0.0.1:${port}`, '--names', names.slice(p * per, (p + 1) * per).join(',')]));
  const roundsSeen: Array<Record<string, unknown>> = [];
  let done;
  try {
    done = await server.waitFor(event('done'), rounds * 900_000);
  } finally {
    clearInterval(sampler);
  }
  try {
    peak = Math.max(peak, (await status(pid)).hwm);
  } catch {
    // exited already: the sampled peak stands
  }
  await Promise.all(siteProcs.map((p) => p.waitFor(event('sites_done'), 60_000).catch(() => undefined)));
  for (const p of [server, ...siteProcs]) p.proc.kill('SIGKILL');
  roundsSeen.push(...server.messages.filter((m) => m.event === 'round'));
  const out = {
    sites, rounds, model: a.model, decoder_mb: Number(decoderMb.toFixed(2)), site_processes: procs,
    rounds_completed: Number(done.round),
    accepted: roundsSeen.map((r) => r.accepted),
    all_accepted: roundsSeen.length === rounds && roundsSeen.every((r) => r.accepted === sites && r.attempts === 1),
    server_peak_rss_mb: Number(peak.toFixed(1)),
    server_idle_rss_mb: Number(idle.toFixed(1)),
    round_seconds: roundsSeen.map((r) => Number(Number(r.seconds).toFixed(2))),
    wall_seconds: Number(((performance.now() - t0) / 1000).toFixed(1)),
    node: process.version, cpus: cpus().length, loadavg_1m: Number(loadavg()[0]!.toFixed(2)),
  };
  await rm(dir, { recursive: true, force: true });
  if (a.json) process.stdout.write(JSON.stringify(out) + '\n');
  else {
    process.stdout.write(`${sites} sites x ${rounds} rounds, ${a.model} decoder (${out.decoder_mb} MB), sites in ${procs} processes\n`);
    for (const [i, r] of roundsSeen.entries()) process.stdout.write(`  round ${i + 1}: ${out.round_seconds[i]} s, ${r.accepted}/${sites} updates accepted\n`);
    process.stdout.write(`  server RSS: ${out.server_idle_rss_mb} MB listening, peak ${out.server_peak_rss_mb} MB; wall ${out.wall_seconds} s (load ${out.loadavg_1m})\n`);
  }
}

if (a.role === 'server') await serverRole();
else if (a.role === 'sites') await sitesRole();
else if (await withHeapFlag(SCRIPT)) await main();
