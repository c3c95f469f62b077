// One sam-vit-base mask decoder (4,058,340 parameters) down and up over loopback gRPC, f32 and f16 on the wire.
// The aggregation server runs in a child process (as on another machine); the site side runs here.
//
//   node --import tsx bench/transfer.ts [--reps N] [--skip-gc] [--checksum xxh3|crc32|sha256] [--stream-window MiB] [--json]
//
// Both processes run with the V8 flag bin/fedsam.mjs uses (--initial-old-space-size=64; the script re-runs itself
// with it), as the daemons do.
//
// download = DownloadGlobal: stream in, chunk reassembly, checksum, float32 tensors out (f16: + conversion).
// upload   = SubmitUpdate of an encoded update: stream out, and the server's reassembly into a reused buffer,
//            finite check as chunks arrive, checksum, hand-over to the aggregator, answer. The site's encoding
//            (copy or f16 conversion + checksum) is shown apart. Each upload completes a one-site round: the
//            server aggregates and writes that round after it has answered. Before encoding, the site runs a full
//            garbage collection, as the daemon does after training (client/src/daemon/heap.ts; shown apart; --skip-gc:
//            without it, to see what it saves).
// The server encodes and frames each new global once, when it is made (not per download). Checksum: the best both
// sides have (xxh3 where @node-rs/xxhash installed); --checksum makes the site ask for and send only that one.
// MB/s = wire payload bytes / s (f32: 16.2 MB, f16: 8.1 MB); "model MB/s" = float32-equivalent bytes / s.
// "site CPU ms" = this process's CPU time during the transfer (steadier than wall time on a shared machine).
import { spawn } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { destination, pino } from 'pino';
import type { HostTensor } from '@fedsam/shared/safetensors';
import { CHECKSUM_ALGORITHMS, pickChecksum, type ChecksumAlgorithm } from '@fedsam/shared/transfer/checksum';
import { buildManifest } from '@fedsam/shared/transfer/manifest';
import type { WireDtype } from '@fedsam/shared/transfer/messages';
import { cpus, loadavg } from 'node:os';
import { hashToken } from '@fedsam/server/auth';
import { runServer } from '@fedsam/server/server';
import { raiseServerFlowControlWindow } from '@fedsam/server/http2-tuning';
import { Connection } from '@fedsam/client/daemon/connection';
import { collectGarbage } from '@fedsam/client/daemon/heap';
import { lcgWeights, median, vitBaseDecoderShapes, withHeapFlag } from './common.ts';

const TOKEN = 'bench-token';
const HASH = 'be7c4'.repeat(8);

function decoder(): Map<string, HostTensor> {
  return lcgWeights(vitBaseDecoderShapes(), 1);
}

// Transport ceiling: the same 16 x 1 MiB messages through grpc-js with pass-through (de)serializers and no checks.
const id = (b: Buffer) => b;
const RAW_SERVICE: grpc.ServiceDefinition = {
  Down: { path: '/bench.Raw/Down', requestStream: false, responseStream: true, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id, originalName: 'Down' },
  Up: { path: '/bench.Raw/Up', requestStream: true, responseStream: false, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id, originalName: 'Up' },
};

async function serveRaw(bytes: number): Promise<number> {
  const payload = Buffer.alloc(bytes, 7);
  const s = new grpc.Server();
  raiseServerFlowControlWindow(s, 16 << 20); // as the FedSAM server does
  s.addService(RAW_SERVICE, {
    Down: async (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      for (let off = 0; off < payload.length; off += 1 << 20) {
        if (!call.write(payload.subarray(off, off + (1 << 20)))) await new Promise((r) => call.once('drain', r));
      }
      call.end();
    },
    Up: (call: grpc.ServerReadableStream<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      let n = 0;
      call.on('data', (b: Buffer) => (n += b.length));
      call.on('end', () => cb(null, Buffer.from(String(n))));
    },
  });
  return new Promise((resolve, reject) => s.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
}

async function rawCeiling(port: number, bytes: number, reps: number): Promise<{ down: number; up: number }> {
  const Client = grpc.makeGenericClientConstructor(RAW_SERVICE, 'Raw');
  const c = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc-node.flow_control_window': 16 << 20 }) as unknown as {
    Down(req: Buffer): AsyncIterable<Buffer>;
    Up(cb: (e: Error | null) => void): grpc.ClientWritableStream<Buffer>;
    close(): void;
  };
  const payload = Buffer.alloc(bytes, 3);
  const down: number[] = [];
  const up: number[] = [];
  for (let r = 0; r <= reps; r++) {
    let t = performance.now();
    for await (const _ of c.Down(Buffer.alloc(0))) void _;
    const d = performance.now() - t;
    t = performance.now();
    await new Promise<void>((resolve, reject) => {
      const call = c.Up((e) => (e ? reject(e) : resolve()));
      (async () => {
        for (let off = 0; off < payload.length; off += 1 << 20) {
          if (!call.write(payload.subarray(off, off + (1 << 20)))) await new Promise((res) => call.once('drain', res));
        }
        call.end();
      })();
    });
    if (r > 0) {
      down.push(d);
      up.push(performance.now() - t);
    }
  }
  c.close();
  return { down: median(down), up: median(up) };
}

async function serve(rounds: number, streamWindowMiB?: number): Promise<void> {
  const initialDecoder = decoder();
  const h = await runServer(
    {
      listen: '127.0.0.1:0', rounds, min_available_clients: 1, min_fit_clients: 1, evaluate_every: 0, long_poll_s: 30,
      round_timeout_s: 600, base_model_hash: HASH, out_dir: fileURLToPath(new URL(`../runs/bench-transfer-${process.pid}`, import.meta.url)),
      sites: [{ name: 'bench', token_sha256: hashToken(TOKEN) }], metrics: null, keep_rounds: 1, shutdown_grace_s: 1,
      ...(streamWindowMiB ? { limits: { stream_window_bytes: Math.round(streamWindowMiB * 1024 * 1024) } } : {}),
    },
    { logger: pino({ level: 'warn' }, destination(2)), initialDecoder },
  );
  const rawPort = await serveRaw(buildManifest(initialDecoder).total_bytes);
  process.stdout.write(JSON.stringify({ port: h.port, rawPort }) + '\n');
  const { rm } = await import('node:fs/promises');
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      void h.stop(sig).finally(() => rm(h.config.out_dir, { recursive: true, force: true }).finally(() => process.exit(0)));
    });
  }
  await h.done; // the raw ceiling server stays up until the parent sends SIGTERM
}

interface Row {
  dtype: WireDtype;
  direction: 'download' | 'upload';
  wireMB: number;
  ms: number;
  /** Fastest and slowest single transfer (they spread widely on a shared machine). */
  minMs: number;
  maxMs: number;
  mbps: number;
  modelMbps: number;
  /** upload: the site's encoding before the stream (copy / f16 conversion + checksum). */
  encodeMs?: number;
  /** upload: the site's full garbage collection before encoding (the daemon runs one after training). */
  gcMs?: number;
  /** This (site) process's CPU time during the transfer: a steadier figure than wall time on a shared machine. */
  siteCpuMs: number;
}


async function main(): Promise<void> {
  const { values: args } = parseArgs({
    options: {
      reps: { type: 'string', default: '9' }, 'skip-gc': { type: 'boolean', default: false }, checksum: { type: 'string' },
      json: { type: 'boolean', default: false }, serve: { type: 'string' },
      // the server's per-stream HTTP/2 window (limits.stream_window_bytes, default 2 MiB), to compare
      'stream-window': { type: 'string' },
    },
  });
  const reps = Number(args.reps);
  const streamWindow = args['stream-window'] ? Number(args['stream-window']) : undefined;
  if (args.serve !== undefined) return serve(Number(args.serve), streamWindow); // the child: the server side
  if (args.checksum !== undefined && !(CHECKSUM_ALGORITHMS as readonly string[]).includes(args.checksum)) {
    throw new Error(`--checksum ${args.checksum}: this build has ${CHECKSUM_ALGORITHMS.join(', ')}`);
  }
  const checksums = args.checksum ? [args.checksum as ChecksumAlgorithm] : CHECKSUM_ALGORITHMS;
  const rounds = 2 * (reps + 1);
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--serve', String(rounds), ...(streamWindow ? ['--stream-window', String(streamWindow)] : [])], { stdio: ['ignore', 'pipe', 'inherit'] });
  const { port, rawPort } = await new Promise<{ port: number; rawPort: number }>((resolve, reject) => {
    // the first JSON line (V8 flags such as --trace-gc may print before it)
    createInterface({ input: child.stdout! }).on('line', (l) => l.startsWith('{') && resolve(JSON.parse(l) as { port: number; rawPort: number }));
    child.once('exit', (c) => reject(new Error(`bench server exited (${c})`)));
  });
  const conn = new Connection({ server: `127.0.0.1:${port}`, token: TOKEN, checksums });
  const w = decoder();
  const manifest = buildManifest(w, 'F32');
  const modelBytes = manifest.total_bytes;
  await conn.join({ site: 'bench', base_model_hash: HASH, decoder: manifest, client_version: 'bench' });
  const rows: Row[] = [];
  let round = 0;
  for (const dtype of ['F32', 'F16'] as WireDtype[]) {
    const down: number[] = [];
    const up: number[] = [];
    const encode: number[] = [];
    const gcs: number[] = [];
    const cpuDown: number[] = [];
    const cpuUp: number[] = [];
    const cpuMs = (c: NodeJS.CpuUsage) => (c.user + c.system) / 1000;
    let wire = 0;
    for (let r = 0; r < reps + 1; r++) {
      const task = await conn.getTask(30_000);
      if (!task.fit) throw new Error(`expected a fit task, got ${JSON.stringify(task)}`);
      round = task.round;
      let t = performance.now();
      let c0 = process.cpuUsage();
      const g = await conn.downloadGlobal({ dtype });
      const dMs = performance.now() - t;
      const dCpu = cpuMs(process.cpuUsage(c0));
      wire = g.bytes;
      t = performance.now();
      if (!args['skip-gc']) collectGarbage(); // as the site daemon does after training (client/src/daemon/heap.ts)
      const gcMs = performance.now() - t;
      t = performance.now();
      const enc = conn.encodeUpdate(g.weights, dtype);
      const eMs = performance.now() - t;
      t = performance.now();
      c0 = process.cpuUsage();
      await conn.submitUpdate({ task_id: task.task_id, round, num_examples: 10, metrics: {} }, enc);
      conn.recycle(enc.payload); // as the site daemon does once an update is accepted
      const uMs = performance.now() - t;
      const uCpu = cpuMs(process.cpuUsage(c0));
      if (r > 0) {
        // first repetition = warm-up (connection, JIT)
        down.push(dMs);
        up.push(uMs);
        encode.push(eMs);
        gcs.push(gcMs);
        cpuDown.push(dCpu);
        cpuUp.push(uCpu);
      }
    }
    for (const [direction, times, cpu] of [['download', down, cpuDown], ['upload', up, cpuUp]] as const) {
      const ms = median(times);
      rows.push({
        dtype, direction, wireMB: wire / 1e6, ms, minMs: Math.min(...times), maxMs: Math.max(...times), mbps: wire / 1e6 / (ms / 1000), modelMbps: modelBytes / 1e6 / (ms / 1000),
        encodeMs: direction === 'upload' ? median(encode) : undefined, gcMs: direction === 'upload' ? median(gcs) : undefined, siteCpuMs: median([...cpu]),
      });
    }
  }
  conn.close();
  const raw = await rawCeiling(rawPort, modelBytes, reps);
  child.kill('SIGTERM');
  if (args.json) {
    process.stdout.write(JSON.stringify({ rows, rawCeiling: raw }, null, 2) + '\n');
    return;
  }
  const lines = [
    `One sam-vit-base mask decoder over loopback gRPC (1 MiB chunks, ${pickChecksum(CHECKSUM_ALGORITHMS, checksums)} checksum), median of ${reps}; target >= 500 MB/s`,
    '',
    '| wire dtype | direction | wire MB | ms    | fastest–slowest ms | MB/s (wire) | model MB/s (f32-equivalent) | site CPU ms | + site encode ms | + site GC ms |',
    '|------------|-----------|--------:|------:|-------------------:|------------:|----------------------------:|------------:|-----------------:|-------------:|',
    ...rows.map(
      (r) =>
        `| ${r.dtype.padEnd(10)} | ${r.direction.padEnd(9)} | ${r.wireMB.toFixed(1).padStart(7)} | ${r.ms.toFixed(1).padStart(5)} | ` +
        `${`${r.minMs.toFixed(1)}–${r.maxMs.toFixed(1)}`.padStart(18)} | ` +
        `${r.mbps.toFixed(0).padStart(11)} | ${r.modelMbps.toFixed(0).padStart(27)} | ${r.siteCpuMs.toFixed(1).padStart(11)} | ${(r.encodeMs === undefined ? '' : r.encodeMs.toFixed(1)).padStart(16)} | ${(r.gcMs === undefined ? '' : r.gcMs.toFixed(1)).padStart(12)} |`,
    ),
    '',
    `transport ceiling on this machine (grpc-js, same 1 MiB messages, pass-through serializers, no checks): ` +
      `download ${(modelBytes / 1e6 / (raw.down / 1000)).toFixed(0)} MB/s, upload ${(modelBytes / 1e6 / (raw.up / 1000)).toFixed(0)} MB/s`,
    `machine load average during the run: ${loadavg().map((x) => x.toFixed(1)).join(' ')} (${cpus().length} CPUs)`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

if (await withHeapFlag(fileURLToPath(import.meta.url))) await main();
