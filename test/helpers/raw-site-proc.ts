// A site in its own process that stops half-way, for kill tests. argv[2]: JSON {server, site, token, layout,
// mode}: 'upload' sends the header and one chunk of its update, 'download' reads the header and one chunk of
// the global; then it prints {"event":"stalled"} and waits to be killed.
import { status } from '@grpc/grpc-js';
import { encode, layoutManifest, RawSite, updateFrames } from './raw-client.ts';
import { FAKE_BASE_HASH } from './fake-engine.ts';

const o = JSON.parse(process.argv[2]!) as { server: string; site: string; token: string; layout: Array<[string, number[]]>; mode: 'upload' | 'download' };
const layout = new Map(o.layout);
const print = (m: Record<string, unknown>) => process.stdout.write(JSON.stringify(m) + '\n');
const s = new RawSite(o.server, o.token);
const j = await s.join(o.site, FAKE_BASE_HASH, layoutManifest(layout));
if (j.code !== status.OK) throw new Error(`join: ${j.details}`);
const task = await s.task('fit', 60_000);
if (o.mode === 'upload') {
  const up = s.upload(600_000);
  const frames = updateFrames({ task_id: String(task.task_id), round: Number(task.round), num_examples: 1 }, layout, () => 0.5, 64 * 1024);
  up.write(frames[0]!);
  up.write(frames[1]!);
} else {
  const call = s.client.makeServerStreamRequest<Buffer, Buffer>('/fedsam.v1.FedSam/DownloadGlobal', (b) => b, (b) => b,
    encode('DownloadRequest', { dtype: 'F32' }), s.metadata(), { deadline: Date.now() + 600_000 });
  let n = 0;
  await new Promise<void>((resolve) => call.on('data', () => {
    if (++n === 2) {
      call.pause(); // read no further: the server's writes wait on flow control
      resolve();
    }
  }));
}
print({ event: 'stalled' });
setInterval(() => undefined, 1 << 30);
