// Every bad join/update is refused with its gRPC status and reason, logged, and leaves the global model untouched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import type { HostTensor } from '@fedsam/shared/safetensors';
import { encodeTransfer, payloadChunks, trailerFor } from '@fedsam/shared/transfer/codec';
import { buildManifest } from '@fedsam/shared/transfer/manifest';
import type { Task, UpdateFrame } from '@fedsam/shared/transfer/messages';
import { runServer } from '@fedsam/server/server';
import { runClient, type ClientHandle } from '@fedsam/client/daemon/client';
import { Connection } from '@fedsam/client/daemon/connection';
import { cloneWeights, fakeEngine, FAKE_BASE_HASH, referenceFedAvg, tinyDecoder, tinyLayout } from './helpers/fake-engine.ts';
import { assertClose, captureLogs, quietLogger, sitesConfig, tempDir, tokenFor } from './helpers/fed-harness.ts';

const layoutManifest = (layout = tinyLayout()) =>
  buildManifest(new Map([...layout].map(([n, s]) => [n, { dtype: 'float32' as const, shape: s, data: new Float32Array(s.reduce((a, b) => a * b, 1)) }])));

async function refused(p: Promise<unknown>, code: status, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (e: ServiceError) => {
    assert.equal(e.code, code, `expected ${status[code]}, got ${status[e.code]}: ${e.details}`);
    assert.match(e.details, pattern);
    return true;
  });
}

function shifted(w: Map<string, HostTensor>, by: number): Map<string, HostTensor> {
  const out = cloneWeights(w);
  for (const t of out.values()) for (let i = 0; i < t.data.length; i++) (t.data as Float32Array)[i]! += by;
  return out;
}

test('bad joins and bad updates are refused with a reason; the global model only ever sees valid updates', async () => {
  const logs = captureLogs();
  const names = ['site-a', 'site-b', 'site-c', 'site-d'];
  const server = await runServer(
    {
      listen: '127.0.0.1:0', rounds: 1, min_available_clients: 3, min_fit_clients: 3, round_timeout_s: 30, long_poll_s: 1,
      evaluate_every: 0, base_model_hash: FAKE_BASE_HASH, weighting: { policy: 'reported' }, out_dir: await tempDir(), sites: sitesConfig(names), metrics: null,
      shutdown_grace_s: 2, limits: { max_refusals_per_round: 50 },
    },
    { logger: logs.logger, initialDecoder: tinyDecoder(21) },
  );
  const addr = `127.0.0.1:${server.port}`;
  const v0 = server.coordinator.globalVersion;
  const joinReq = (over: Record<string, unknown> = {}) => ({ site: '', base_model_hash: FAKE_BASE_HASH, decoder: layoutManifest(), client_version: 'test', ...over });

  // --- joins
  const stranger = new Connection({ server: addr, token: 'not-a-token' });
  await refused(stranger.join(joinReq()), status.UNAUTHENTICATED, /invalid token/);
  const otherModel = new Connection({ server: addr, token: tokenFor('site-d') });
  await refused(otherModel.join(joinReq({ base_model_hash: 'deadbeef'.repeat(8) })), status.FAILED_PRECONDITION, /base model hash .* differs/);
  const wrongLayout = tinyLayout();
  wrongLayout.set('mask_decoder.iou_token.weight', [1, 9]);
  await refused(otherModel.join(joinReq({ decoder: layoutManifest(wrongLayout) })), status.FAILED_PRECONDITION, /decoder does not match.*iou_token/);
  const mallory = new Connection({ server: addr, token: tokenFor('site-c') });
  await refused(mallory.join(joinReq({ site: 'site-a' })), status.PERMISSION_DENIED, /belongs to site site-c/);

  // --- the good sites
  let openGate!: () => void;
  const gate = new Promise<void>((r) => (openGate = r)); // site-b answers only at the end: the round stays open
  const engines = [fakeEngine({ target: 0.2, delta: 1, numExamples: 4 }), fakeEngine({ target: -0.1, delta: 2, numExamples: 6, gate })];
  let taskOfA: Task | undefined;
  const clients: ClientHandle[] = ['site-a', 'site-b'].map((site, i) =>
    runClient({
      server: addr, token: tokenFor(site), site, engine: engines[i]!, logger: quietLogger(),
      onEvent: (e) => {
        if (e.type === 'task' && site === 'site-a') taskOfA = e.task;
      },
    }),
  );

  // --- mallory (site-c) joins properly, gets its fit task, then tries every kind of bad update
  await mallory.join(joinReq({ site: 'site-c' }));
  let task: Task;
  for (;;) {
    task = await mallory.getTask(1000);
    if (task.fit) break;
  }
  const g = await mallory.downloadGlobal({ expectedVersion: task.global_version });
  assert.equal(g.version, v0);
  const header = { task_id: task.task_id, round: task.round, num_examples: 9, metrics: { loss: 0.5 } };
  const good = shifted(g.weights, 0.25);

  const nan = cloneWeights(good);
  (nan.get('mask_decoder.mask_tokens.weight')!.data as Float32Array)[3] = NaN;
  await refused(mallory.submitUpdate(header, encodeTransfer(nan)), status.INVALID_ARGUMENT, /mask_tokens.weight" has a non-finite value \(NaN\) at index 3/);

  const inf = cloneWeights(good);
  (inf.get('mask_decoder.upscale_layer_norm.weight')!.data as Float32Array)[1] = Infinity;
  await refused(mallory.submitUpdate(header, encodeTransfer(inf, 'F16')), status.INVALID_ARGUMENT, /non-finite value \(Infinity\)/);

  const badShape = cloneWeights(good);
  badShape.set('mask_decoder.transformer.layers.0.mlp.lin1.bias', { dtype: 'float32', shape: [8, 2], data: new Float32Array(16) });
  await refused(mallory.submitUpdate(header, encodeTransfer(badShape)), status.INVALID_ARGUMENT, /lin1.bias" has shape \[8, 2\], expected \[16\]/);

  const extra = cloneWeights(good);
  extra.set('vision_encoder.neck.conv1.weight', { dtype: 'float32', shape: [2], data: new Float32Array(2) });
  await refused(mallory.submitUpdate(header, encodeTransfer(extra)), status.INVALID_ARGUMENT, /unexpected tensor "vision_encoder.neck.conv1.weight"/);

  const missing = cloneWeights(good);
  missing.delete('mask_decoder.iou_token.weight');
  await refused(mallory.submitUpdate(header, encodeTransfer(missing)), status.INVALID_ARGUMENT, /"mask_decoder.iou_token.weight" is missing/);

  await refused(mallory.submitUpdate({ ...header, round: 0 }, encodeTransfer(good)), status.FAILED_PRECONDITION, /stale update: it is for round 0 but fit round 1 is open/);
  await refused(mallory.submitUpdate({ ...header, round: 2 }, encodeTransfer(good)), status.FAILED_PRECONDITION, /stale update: it is for round 2/);

  const corrupt = encodeTransfer(good);
  corrupt.payload[17] ^= 0x40; // bit flip after the checksum was taken
  await refused(mallory.submitUpdate(header, corrupt), status.INVALID_ARGUMENT, /checksum mismatch/);

  const enc = encodeTransfer(good);
  const chunks = [...payloadChunks(enc.payload, 256)];
  const frames: UpdateFrame[] = [{ header: { ...header, manifest: enc.manifest } }, { chunk: chunks[1]! }, { chunk: chunks[0]! }, { trailer: trailerFor(enc.checksum) }];
  await refused(mallory.submitFrames(frames), status.INVALID_ARGUMENT, /chunks must come in order/);
  await refused(mallory.submitFrames([frames[0]!, frames[2]!]), status.INVALID_ARGUMENT, /transfer ended after 256 of/);

  await refused(mallory.submitUpdate({ ...header, num_examples: 0 }, encodeTransfer(good)), status.INVALID_ARGUMENT, /num_examples must be a positive integer/);
  await refused(mallory.submitUpdate({ ...header, metrics: { loss: NaN } }, encodeTransfer(good)), status.INVALID_ARGUMENT, /metric "loss" is not a finite number/);

  // site-c cannot upload as site-a: identity comes from the token, a task id of another site is refused
  while (!taskOfA) await new Promise((r) => setTimeout(r, 10));
  await refused(mallory.submitUpdate({ ...header, task_id: taskOfA.task_id }, encodeTransfer(good)), status.PERMISSION_DENIED, /assigned to another site, not to site-c/);

  // no token / no session
  const noSession = new Connection({ server: addr, token: tokenFor('site-c') });
  await refused(noSession.submitUpdate(header, encodeTransfer(good)), status.UNAUTHENTICATED, /x-fedsam-session/);
  const forged = new Connection({ server: addr, token: 'forged' });
  forged.sessionId = mallory.sessionId;
  await refused(forged.submitUpdate(header, encodeTransfer(good)), status.UNAUTHENTICATED, /invalid token/);

  // nothing touched the global model, the round is still open
  assert.equal(server.coordinator.round, 0);
  assert.equal(server.coordinator.globalVersion, v0);

  // a valid update goes in, a second one from the same site in the same round does not
  const ok = await mallory.submitUpdate(header, encodeTransfer(good));
  assert.equal(ok.accepted, true);
  await refused(mallory.submitUpdate(header, encodeTransfer(shifted(good, 1))), status.FAILED_PRECONDITION, /already submitted an update for round 1/);
  await mallory.leave('done');
  openGate();

  const res = await server.done;
  await Promise.all(clients.map((c) => c.done));
  assert.deepEqual(res.history[0]!.fit!.accepted, ['site-a', 'site-b', 'site-c']);
  const expected = referenceFedAvg([
    { weights: engines[0]!.fits[0]!.weights, numExamples: 4 },
    { weights: engines[1]!.fits[0]!.weights, numExamples: 6 },
    { weights: good, numExamples: 9 },
  ]);
  for (const [n, e] of expected) assertClose(server.coordinator.globalWeights.get(n)!.data as Float32Array, e, n);

  // every refusal was logged with its reason
  const reasons = logs.lines.filter((l) => l.event === 'update_refused').map((l) => l.reason);
  for (const r of ['nonfinite', 'bad_shape', 'bad_manifest', 'stale_round', 'checksum', 'transfer_order', 'transfer_incomplete', 'bad_num_examples', 'bad_metrics', 'not_your_task', 'duplicate']) {
    assert.ok(reasons.includes(r), `update_refused with reason ${r} logged (got ${reasons.join(', ')})`);
  }
  for (const r of ['bad_token', 'base_model_mismatch', 'decoder_mismatch', 'site_mismatch']) {
    assert.ok(logs.find('request_refused', (l) => l.reason === r), `request_refused ${r} logged`);
  }
  for (const c of [stranger, otherModel, mallory, noSession, forged]) c.close();
});
