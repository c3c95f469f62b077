process.setSourceMapsEnabled(false);
import * as grpc from '@grpc/grpc-js';
import inspector from 'node:inspector';
import fs from 'node:fs';
const sess = new inspector.Session(); sess.connect();
const post = (m, p) => new Promise((r, j) => sess.post(m, p, (e, x) => (e ? j(e) : r(x))));
let profiling = false;
async function prof(tag) { if (!process.env.PROF) return; if (!profiling) { await post('Profiler.enable'); await post('Profiler.start'); profiling = true; } else { const { profile } = await post('Profiler.stop'); fs.writeFileSync(`/tmp/prof-${process.env.PROF}-${tag}.cpuprofile`, JSON.stringify(profile)); profiling = false; } }
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
const CHUNK = Number(process.env.CHUNK || (1<<20));
const BYTES = 16233360;
const id = (b) => b;
const SVC = {
  Up: { path: '/b/Up', requestStream: true, responseStream: false, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id },
  Cpu: { path: '/b/Cpu', requestStream: false, responseStream: false, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id },
};
if (process.argv[2] === 'serve') {
  const s = new grpc.Server({'grpc-node.max_session_memory': 1e9});
  s.commonServerOptions.settings = { initialWindowSize: 16<<20, maxFrameSize: Number(process.env.FRAME || 16384) };
  for (const k of ['_sessionHandler','_channelzSessionHandler']) { const oh = s[k];
  s[k] = function (h) { const f = oh.call(this, h); return (sess) => { sess.setLocalWindowSize(16<<20); if (process.env.DBG) setInterval(() => console.error("srv", JSON.stringify(sess.state)), 200).unref(); f(sess); }; }; }
  s.addService(SVC, {
    Up: (call, cb) => { let n = 0; call.on('data', (b) => (n += b.length)); call.on('end', () => cb(null, Buffer.from(String(n)))); },
    Cpu: async (call, cb) => { await prof('server'); cb(null, Buffer.from(JSON.stringify(process.cpuUsage()))); },
  });
  s.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => console.log(p));
} else {
  const child = spawn(process.execPath, [...process.execArgv, new URL(import.meta.url).pathname, 'serve'], { stdio: ['ignore', 'pipe', 'inherit'], env: process.env });
  const port = await new Promise((r) => createInterface({ input: child.stdout }).once('line', (l) => r(Number(l))));
  const Client = grpc.makeGenericClientConstructor(SVC, 'B');
  const c = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc-node.flow_control_window': 16 << 20 });
  const cpu = () => new Promise((r) => c.Cpu(Buffer.alloc(0), (e, b) => r(JSON.parse(b.toString()))));
  const payload = Buffer.alloc(BYTES, 3);
  const up1 = async () => new Promise((resolve, reject) => { const call = c.Up((e) => (e ? reject(e) : resolve())); (async () => { for (let off = 0; off < BYTES; off += CHUNK) { if (!call.write(payload.subarray(off, off + CHUNK)) && !process.env.NODRAIN) await new Promise((res) => call.once("drain", res)); } call.end(); })(); });
  await up1(); await up1();
  const s0 = await cpu(); await prof('client'); const c0 = process.cpuUsage(); const t = performance.now();
  const N = 10; for (let i = 0; i < N; i++) await up1();
  const ms = (performance.now() - t) / N; await prof('client'); const s1 = await cpu(); const c1 = process.cpuUsage(c0);
  console.log(`up ${(BYTES/1e3/ms).toFixed(0)} MB/s, ${ms.toFixed(1)} ms; client cpu ${((c1.user + c1.system)/1e3/N).toFixed(1)} ms (sys ${(c1.system/1e3/N).toFixed(1)}); server cpu ${((s1.user - s0.user + s1.system - s0.system)/1e3/N).toFixed(1)} ms (sys ${((s1.system - s0.system)/1e3/N).toFixed(1)})`);
  c.close(); child.kill();
}
