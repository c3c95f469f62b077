// Named-tensor transfer codec (shared/src/transfer/), checksums, base model hash, and the server config and flags.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { float16BitsToFloat32, float32ToFloat16Bits } from '@fedsam/shared/safetensors';
import { frozenEncodersHash } from '@fedsam/shared/checkpoint/baseModelHash';
import { tensorsVersion } from '@fedsam/shared/checkpoint/hash';
import { CHECKSUM_ALGORITHMS, createChecksum, pickChecksum } from '@fedsam/shared/transfer/checksum';
import { DEFAULT_CHUNK_BYTES, decodePayload, encodeTransfer, findNonFinite, payloadChunks, trailerFor, trailerOf, TransferDecoder, firstNonFinite } from '@fedsam/shared/transfer/codec';
import { TransferError } from '@fedsam/shared/transfer/errors';
import { checkManifest, layoutOf, buildManifest } from '@fedsam/shared/transfer/manifest';
import type { DownloadFrame } from '@fedsam/shared/transfer/messages';
import { foldArena } from '@fedsam/server/strategy/foldArena';
import { loadServerConfig, parseServerConfig, ServerConfigError } from '@fedsam/server/config';
import { flagsToConfig } from '@fedsam/cli/commands/server';
import { hashToken, SiteAuthenticator } from '@fedsam/server/auth';
import { credentials, Metadata } from '@grpc/grpc-js';
import { collectGarbage } from '@fedsam/client/daemon/heap';
import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import { runInNewContext } from 'node:vm';
import { FAKE_BASE_HASH, fakeEngine, tinyDecoder } from './helpers/fake-engine.ts';
import { runServer } from '@fedsam/server/server';
import { Connection } from '@fedsam/client/daemon/connection';
import { fedsamClientConstructor } from '@fedsam/client/daemon/proto';
import { captureLogs, quietLogger, sitesConfig, tempDir, tokenFor, until } from './helpers/fed-harness.ts';
import { runClient } from '@fedsam/client/daemon/client';
import { fitConfigFromWire, InvalidFitConfigError } from '@fedsam/client/daemon/fitConfig';

function bigDecoder(): Map<string, import('@fedsam/shared/safetensors').HostTensor> {
  const a = new Float32Array(700_000).map((_, i) => Math.sin(i));
  const b = new Float32Array(3).map((_, i) => i - 1);
  return new Map([
    ['mask_decoder.a', { dtype: 'float32' as const, shape: [700, 1000], data: a }],
    ['mask_decoder.b', { dtype: 'float32' as const, shape: [3], data: b }],
  ]);
}

function roundTrip(w: ReturnType<typeof bigDecoder>, dtype: 'F32' | 'F16') {
  const enc = encodeTransfer(w, dtype);
  const dec = new TransferDecoder(enc.manifest);
  let n = 0;
  for (const c of payloadChunks(enc.payload)) {
    assert.ok(c.data.length <= DEFAULT_CHUNK_BYTES);
    dec.push(c);
    n++;
  }
  return { enc, out: dec.finish(trailerFor(enc.checksum)), chunks: n };
}

test('f32 transfer: exact round trip in <= 1 MiB chunks, sha256 checked', () => {
  const w = bigDecoder();
  const { enc, out, chunks } = roundTrip(w, 'F32');
  assert.equal(enc.manifest.total_bytes, 700_003 * 4);
  assert.equal(chunks, Math.ceil((700_003 * 4) / DEFAULT_CHUNK_BYTES));
  for (const [n, t] of w) {
    assert.deepEqual(out.get(n)!.shape, t.shape);
    assert.deepEqual(out.get(n)!.data, t.data);
  }
  assert.equal(tensorsVersion(out), tensorsVersion(w));
});

test('f16 transfer: values rounded to nearest half', () => {
  const w = bigDecoder();
  const { enc, out } = roundTrip(w, 'F16');
  assert.equal(enc.manifest.total_bytes, 700_003 * 2);
  const a = w.get('mask_decoder.a')!.data as Float32Array;
  const got = out.get('mask_decoder.a')!.data as Float32Array;
  for (let i = 0; i < a.length; i += 997) assert.equal(got[i], float16BitsToFloat32(float32ToFloat16Bits(a[i]!)));
});

test('checksums: xxh3, crc32 and sha256, announced in the manifest, known values, corruption caught', () => {
  // The optional native xxh3 installs on this platform (linux x64): its absence would be a broken install.
  assert.deepEqual(CHECKSUM_ALGORITHMS, ['xxh3', 'crc32', 'sha256']);
  const hex = (alg: string, text: string) => {
    const h = createChecksum(alg);
    for (const part of [text.slice(0, 4), text.slice(4)]) h.update(Buffer.from(part)); // streamed in two pieces
    return Buffer.from(h.digest()).toString('hex');
  };
  assert.equal(hex('xxh3', ''), '2d06800538d394c2'); // XXH3-64 test vector
  assert.equal(hex('crc32', '123456789'), 'cbf43926'); // CRC-32/IEEE check value
  assert.equal(hex('sha256', 'abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  const w = tinyDecoder(4);
  for (const alg of CHECKSUM_ALGORITHMS) {
    const enc = encodeTransfer(w, 'F32', alg);
    assert.equal(enc.manifest.checksum_algorithm, alg);
    assert.equal(enc.checksum.length, { xxh3: 8, crc32: 4, sha256: 32 }[alg]);
    const dec = new TransferDecoder(enc.manifest);
    for (const c of payloadChunks(enc.payload, 100)) dec.push(c);
    assert.equal(dec.finish(trailerOf(enc)).size, w.size);
    const bad = new TransferDecoder(enc.manifest);
    const flipped = enc.payload.slice();
    flipped[123]! ^= 0x10;
    bad.push({ offset: 0, data: flipped });
    assert.throws(() => bad.finish(trailerOf(enc)), /checksum mismatch/, alg);
  }
  // A sender takes the receiver's first algorithm it can compute; a receiver that names none gets crc32.
  assert.equal(pickChecksum(['xxh3', 'crc32', 'sha256']), 'xxh3');
  assert.equal(pickChecksum(['blake3', 'crc32']), 'crc32');
  assert.equal(pickChecksum(['sha256']), 'sha256');
  assert.equal(pickChecksum([]), 'crc32');
  assert.equal(pickChecksum(undefined), 'crc32');
  const enc = encodeTransfer(w, 'F32', 'sha256');
  const dec = new TransferDecoder(enc.manifest);
  dec.push({ offset: 0, data: enc.payload });
  assert.throws(() => dec.finish({ checksum_algorithm: 'crc32', checksum: new Uint8Array(4) }), /differs from the manifest/);
  assert.match(checkManifest({ ...enc.manifest, checksum_algorithm: 'md5' }, layoutOf(w))!.message, /unsupported checksum algorithm "md5"/);
});

test('decoder refuses out-of-order, oversize, truncated and corrupted transfers', () => {
  const enc = encodeTransfer(tinyDecoder(1));
  const chunks = [...payloadChunks(enc.payload, 64)];
  const d1 = new TransferDecoder(enc.manifest);
  assert.throws(() => d1.push(chunks[1]), (e: TransferError) => e.kind === 'order');
  const d2 = new TransferDecoder(enc.manifest);
  for (const c of chunks) d2.push(c);
  assert.throws(() => d2.push({ offset: enc.payload.length, data: new Uint8Array(4) }), (e: TransferError) => e.kind === 'size');
  const d3 = new TransferDecoder(enc.manifest);
  d3.push(chunks[0]);
  assert.throws(() => d3.finish(trailerFor(enc.checksum)), (e: TransferError) => e.kind === 'incomplete');
  const d4 = new TransferDecoder(enc.manifest);
  for (const c of chunks) d4.push(c);
  const bad = new Uint8Array(enc.checksum);
  bad[0] ^= 1;
  assert.throws(() => d4.finish(trailerFor(bad)), /checksum mismatch/);
  const d5 = new TransferDecoder(enc.manifest, { maxChunkBytes: 32 });
  assert.throws(() => d5.push(chunks[0]), /chunk limit/);
  assert.throws(() => [...payloadChunks(enc.payload, 8 << 20)], /chunk size/);
});

test('decoder finite check: NaN / Infinity refused as the chunk holding it arrives, at any chunk boundary', () => {
  // Mixed dtypes: an odd-length F16 tensor first puts the F32 tensor after it off 4-byte alignment.
  const mk = (bad: { tensor: 'h' | 'f'; index: number; value: number } | undefined) => {
    const h = new Float32Array(5).map((_, i) => i / 8);
    const f = new Float32Array(301).map((_, i) => Math.cos(i));
    if (bad) (bad.tensor === 'h' ? h : f)[bad.index] = bad.value;
    return new Map([
      ['mask_decoder.h', { dtype: 'float32' as const, shape: [5], data: h }],
      ['mask_decoder.f', { dtype: 'float32' as const, shape: [301], data: f }],
    ]);
  };
  const encodeMixed = (w: ReturnType<typeof mk>) => {
    // tensor h as F16, tensor f as F32 (one manifest, two dtypes)
    const h = encodeTransfer(new Map([['mask_decoder.h', w.get('mask_decoder.h')!]]), 'F16');
    const f = encodeTransfer(new Map([['mask_decoder.f', w.get('mask_decoder.f')!]]), 'F32');
    const payload = new Uint8Array(h.payload.length + f.payload.length);
    payload.set(h.payload);
    payload.set(f.payload, h.payload.length);
    const manifest = { tensors: [...h.manifest.tensors, ...f.manifest.tensors], total_bytes: payload.length, checksum_algorithm: 'sha256' };
    return { manifest, payload };
  };
  // the JS scan (sites) and the server's WebAssembly scan over its fold arena
  const arena = foldArena();
  const arenaScan = {
    into: () => arena.bytes(2048),
    scanFinite: (p: Uint8Array, at: number, count: number, dtype: 'F32' | 'F16') => arena.firstNonFinite(p, at, count, dtype),
  };
  for (const [scanner, opts] of [['js', () => ({})], ['wasm', () => ({ into: arenaScan.into(), scanFinite: arenaScan.scanFinite })]] as const)
  for (const chunk of [1, 3, 7, 64, 4096]) {
    const ok = encodeMixed(mk(undefined));
    const d = new TransferDecoder(ok.manifest, { checkFinite: true, ...opts() });
    for (const c of payloadChunks(ok.payload, chunk)) d.push(c);
    assert.equal(d.bytesReceived, ok.payload.length);
    for (const [bad, message] of [
      [{ tensor: 'f', index: 300, value: NaN }, /"mask_decoder.f" has a non-finite value \(NaN\) at index 300/],
      [{ tensor: 'f', index: 0, value: -Infinity }, /"mask_decoder.f" has a non-finite value \(-Infinity\) at index 0/],
      [{ tensor: 'h', index: 4, value: Infinity }, /"mask_decoder.h" has a non-finite value \(Infinity\) at index 4/],
      [{ tensor: 'h', index: 2, value: 1e6 }, /"mask_decoder.h" has a non-finite value \(Infinity\) at index 2/], // overflows float16
    ] as const) {
      const enc = encodeMixed(mk(bad));
      const dec = new TransferDecoder(enc.manifest, { checkFinite: true, ...opts() });
      const byteOfBad = bad.tensor === 'h' ? bad.index * 2 : 10 + bad.index * 4;
      let pushed = 0;
      assert.throws(
        () => {
          for (const c of payloadChunks(enc.payload, chunk)) {
            dec.push(c);
            pushed += c.data.length;
          }
        },
        (e: TransferError) => e.kind === 'nonfinite' && message.test(e.message),
        `${scanner} chunk ${chunk} ${JSON.stringify(bad)}`,
      );
      // refused with the chunk that completed the bad value, not later
      assert.ok(pushed < byteOfBad + (bad.tensor === 'h' ? 2 : 4), `chunk ${chunk}: refused late (${pushed} bytes accepted)`);
    }
  }
});

test('the WebAssembly finite scan finds the first NaN / Infinity at every position, in float32 and float16', () => {
  const arena = foldArena();
  const n = 1000;
  for (const dtype of ['F32', 'F16'] as const) {
    const size = dtype === 'F32' ? 4 : 2;
    const p = arena.bytes(n * size + 16);
    for (const at of [0, 2, 4, 6]) {
      for (const bad of [-1, 0, 1, 15, 16, 31, 32, 500, 998, 999]) {
        p.fill(0);
        const f = new DataView(p.buffer, p.byteOffset);
        for (let i = 0; i < n; i++) dtype === 'F32' ? f.setFloat32(at + i * 4, i - 500.5, true) : f.setUint16(at + i * 2, float32ToFloat16Bits(i / 100 - 5), true);
        if (bad >= 0) dtype === 'F32' ? f.setFloat32(at + bad * 4, bad % 2 ? NaN : -Infinity, true) : f.setUint16(at + bad * 2, bad % 2 ? 0x7e00 : 0xfc00, true);
        if (bad >= 0 && bad + 3 < n) dtype === 'F32' ? f.setFloat32(at + (bad + 3) * 4, Infinity, true) : f.setUint16(at + (bad + 3) * 2, 0x7c00, true);
        const js = firstNonFinite(p, at, n, dtype);
        assert.equal(js, bad, `js ${dtype} at ${at} bad ${bad}`);
        assert.equal(arena.firstNonFinite(p, at, n, dtype), bad, `wasm ${dtype} at ${at} bad ${bad}`);
        assert.equal(arena.firstNonFinite(p, at, bad >= 0 ? bad : 7, dtype), -1, 'a range that ends before the bad value is clean');
      }
    }
    arena.give(p);
  }
  assert.throws(() => arena.firstNonFinite(new Uint8Array(8), 0, 2, 'F32'), /not in the arena/);
});

test('a decoder receiving into shared memory copies chunk data that starts at any offset exactly', () => {
  const w = bigDecoder();
  const enc = encodeTransfer(w);
  const arena = foldArena();
  const into = arena.bytes(enc.payload.length);
  const dec = new TransferDecoder(enc.manifest, { into, checkFinite: true });
  let shift = 0;
  for (const c of payloadChunks(enc.payload, 4093)) {
    // as in a decoded protobuf message: the bytes sit at an odd place in a larger buffer
    const host = new Uint8Array(c.data.length + 8);
    shift = (shift + 3) % 8;
    host.set(c.data, shift);
    dec.push({ ...c, data: host.subarray(shift, shift + c.data.length) });
  }
  const out = dec.finish(trailerOf(enc));
  for (const [n, t] of w) assert.deepEqual(out.get(n)!.data, t.data, n);
  arena.give(into);
});

test('decoder receives into a given buffer (a pool\'s) and refuses one that is too small', () => {
  const w = bigDecoder();
  const enc = encodeTransfer(w);
  const into = new Uint8Array(enc.payload.length).fill(0xff);
  const dec = new TransferDecoder(enc.manifest, { into, checkFinite: true });
  for (const c of payloadChunks(enc.payload)) dec.push(c);
  const out = dec.finish(trailerOf(enc));
  assert.equal((out.get('mask_decoder.a')!.data as Float32Array).buffer, into.buffer, 'float32 tensors are views of the given buffer');
  assert.deepEqual(out.get('mask_decoder.a')!.data, w.get('mask_decoder.a')!.data);
  assert.throws(() => new TransferDecoder(enc.manifest, { into: new Uint8Array(8) }), /smaller than/);
});

test('checkManifest: names, shapes, dtypes, totals and limits', () => {
  const w = tinyDecoder(2);
  const layout = layoutOf(w);
  const m = encodeTransfer(w).manifest;
  assert.equal(checkManifest(m, layout), undefined);
  const refused = (mm: Parameters<typeof checkManifest>[0], o?: Parameters<typeof checkManifest>[2]) => {
    const p = checkManifest(mm, layout, o)!;
    return `${p.reason}: ${p.message}`;
  };
  assert.match(refused({ ...m, total_bytes: 4 }), /^bad_manifest: total_bytes/);
  assert.match(refused(m, { maxBytes: 100 }), /^too_large: .*exceeds the limit/);
  assert.match(refused(m, { allowedDtypes: ['F16'] }), /^bad_dtype: .*dtype F32/);
  assert.match(refused({ ...m, tensors: [...m.tensors, m.tensors[0]!] }), /^bad_manifest: .*twice/);
  assert.match(refused(null), /^bad_manifest: missing manifest/);
  assert.match(refused({ ...m, tensors: m.tensors.map((t, i) => (i ? t : { ...t, shape: [1] })) }), /^bad_shape: /);
  assert.equal(decodePayload(m, encodeTransfer(w).payload).size, w.size);
  const nan = tinyDecoder(2);
  (nan.get('mask_decoder.upscale_layer_norm.weight')!.data as Float32Array)[1] = -Infinity;
  assert.deepEqual(findNonFinite(nan), { name: 'mask_decoder.upscale_layer_norm.weight', index: 1, value: -Infinity });
  assert.equal(findNonFinite(w), undefined);
});

test('frozenEncodersHash ignores the decoder and the tied positional embedding', () => {
  const enc = new Map([
    ['vision_encoder.x', { dtype: 'float32' as const, shape: [2], data: Float32Array.of(1, 2) }],
    ['shared_image_embedding.positional_embedding', { dtype: 'float32' as const, shape: [1], data: Float32Array.of(3) }],
  ]);
  const h = frozenEncodersHash(enc);
  const withMore = new Map([...enc, ...tinyDecoder(3), ['prompt_encoder.shared_embedding.positional_embedding', enc.get('shared_image_embedding.positional_embedding')!]]);
  assert.equal(frozenEncodersHash(withMore), h);
  const changed = new Map(enc);
  changed.set('vision_encoder.x', { dtype: 'float32', shape: [2], data: Float32Array.of(1, 2.5) });
  assert.notEqual(frozenEncodersHash(changed), h);
  assert.throws(() => frozenEncodersHash(tinyDecoder(1)), /no frozen encoder weights/);
});

test("frozenEncodersHash is the engines' base model hash (presets.frozenHashes)", async () => {
  const { frozenHashes, tinySamWeights } = await import('@fedsam/shared/model/presets');
  const { weights } = await tinySamWeights();
  assert.equal(frozenEncodersHash(weights), frozenHashes(weights).baseModelHash);
  const { loadSamCheckpoint } = await import('@fedsam/shared/checkpoint/load');
  const ck = await loadSamCheckpoint(fileURLToPath(new URL('./fixtures/tiny-box', import.meta.url)));
  assert.equal(frozenEncodersHash(ck.weights), frozenHashes(ck.weights).baseModelHash);
});

test('server config: defaults, clear errors, YAML file + flag overrides', async () => {
  const sites = [{ name: 'a', token_sha256: hashToken('x') }];
  const c = parseServerConfig({ sites, base_model_hash: 'ABCDEF0123' });
  assert.equal(c.rounds, 10);
  assert.equal(c.strategy.name, 'scaffold');
  assert.equal(c.base_model_hash, 'abcdef0123');
  assert.equal(c.limits.chunk_bytes, 1 << 20);
  assert.throws(
    () => parseServerConfig({ rounds: 0, min_fit_clients: 5, sites: [{ name: 'a b', token_sha256: 'nope' }], strategy: { name: 'fedadam', eta: 'big' }, bogus: 1 }),
    (e: ServerConfigError) => {
      for (const re of [/rounds: Number must be greater than 0/, /sites\.0\.name/, /sites\.0\.token_sha256: must be a sha256/, /strategy\.eta: Expected number/, /Unrecognized key.*bogus/]) {
        assert.match(e.message, re);
      }
      return true;
    },
  );
  assert.throws(() => parseServerConfig({ min_fit_clients: 3, min_available_clients: 2 }), /min_fit_clients \(3\) exceeds min_available_clients \(2\)/);
  // keep_rounds follows final_average_rounds unless given; a given one that is too short is an error.
  assert.equal(parseServerConfig({}).keep_rounds, 3);
  assert.equal(parseServerConfig({ final_average_rounds: 6 }).keep_rounds, 5);
  assert.throws(() => parseServerConfig({ final_average_rounds: 5, keep_rounds: 3 }), /final_average_rounds: .*set keep_rounds to at least 4/);
  assert.equal(parseServerConfig({ final_average_rounds: 5, keep_rounds: 4 }).final_average_rounds, 5);
  assert.throws(() => parseServerConfig({ sites: [...sites, { name: 'b', token_sha256: hashToken('x') }] }), /shares its token/);

  const dir = await tempDir();
  const file = join(dir, 'server.yaml');
  await writeFile(file, [
    'rounds: 4',
    'base_model: models/sam',
    'strategy: {name: fedyogi, eta: 0.02}',
    'fit: {epochs: 3}',
    'sites:',
    `  - {name: hospital-1, token_sha256: ${hashToken('t1')}}`,
  ].join('\n'));
  const flags = flagsToConfig({ rounds: 6, tau: 0.01, lr: 0.5, outDir: '/tmp/x', metrics: false, points: [2, 1], boxJitter: 'sam' });
  const cfg = await loadServerConfig(file, flags);
  assert.equal(cfg.rounds, 6);
  assert.equal(cfg.base_model, join(dir, 'models/sam')); // relative to the file
  assert.deepEqual(cfg.strategy, { name: 'fedyogi', eta: 0.02, tau: 0.01, beta_1: 0.9, beta_2: 0.99 });
  assert.deepEqual(cfg.fit, { epochs: 3, lr: 0.5, batch_size: 4, box_jitter: 'sam', seed: 0, points_positive: 2, points_negative: 1, optimizer_state: 'keep', warmup_steps: 0, lr_decay: 1, ditto_lambda: null });
  assert.deepEqual(parseServerConfig({}).fit, { epochs: 1, lr: null, batch_size: 4, box_jitter: null, seed: 0, points_positive: 0, points_negative: 0, optimizer_state: 'keep', warmup_steps: 0, lr_decay: 1, ditto_lambda: null });
  assert.equal(parseServerConfig({ fit: { box_jitter: 12 } }).fit.box_jitter, 12);
  assert.throws(() => parseServerConfig({ fit: { box_jitter: 'loose' } }), /fit\.box_jitter/);
  assert.equal(parseServerConfig({}).final_average_rounds, 3);
  assert.throws(() => parseServerConfig({ keep_rounds: 1 }), /set keep_rounds to at least 2, or final_average_rounds to 1/);
  assert.equal(parseServerConfig({ keep_rounds: 1, final_average_rounds: 1 }).keep_rounds, 1);
  assert.throws(() => parseServerConfig({ fit: { points_positive: -1 } }), ServerConfigError);
  assert.equal(cfg.out_dir, '/tmp/x');
  assert.equal(cfg.metrics, null);
  const m = await loadServerConfig(undefined, flagsToConfig({ strategy: 'fedavgm', serverLr: 0.5, serverMomentum: 0.9 }));
  assert.deepEqual(m.strategy, { name: 'fedavgm', server_learning_rate: 0.5, server_momentum: 0.9 });
  // flags alone (no file), as in a container configured by FEDSAM_* variables
  const bare = await loadServerConfig(undefined, flagsToConfig({ strategy: 'fedavg', lr: 0.003, site: [{ name: 's', token_sha256: hashToken('t') }] }));
  assert.deepEqual(bare.strategy, { name: 'fedavg' });
  assert.equal(bare.fit.lr, 0.003);
  await writeFile(file, 'rounds: [1');
  await assert.rejects(loadServerConfig(file), /not valid YAML/);
  await assert.rejects(loadServerConfig(join(dir, 'missing.yaml')), /cannot read config file/);
});

test('token authentication maps tokens to sites', () => {
  const auth = new SiteAuthenticator([{ name: 'a', token_sha256: hashToken('alpha') }, { name: 'b', token_sha256: hashToken('beta') }]);
  const md = (v?: string) => {
    const m = new Metadata();
    if (v) m.set('authorization', v);
    return m;
  };
  assert.equal(auth.authenticate(md('Bearer beta')), 'b');
  assert.equal(auth.authenticate(md('bearer alpha')), 'a');
  assert.throws(() => auth.authenticate(md('Bearer gamma')), /invalid token/);
  assert.throws(() => auth.authenticate(md()), /missing credentials/);
});

test('fedsam server flags and FEDSAM_* environment reach the config (errors exit 2, listing the problems)', async () => {
  const { Command } = await import('commander');
  const { registerServerCommand } = await import('@fedsam/cli/commands/server');
  const program = new Command().exitOverride();
  registerServerCommand(program);
  const saved = { ...process.env };
  const writes: string[] = [];
  const origWrite = process.stderr.write.bind(process.stderr);
  process.env.FEDSAM_SITES = `a:${hashToken('x')}, b:not-a-hash`;
  process.env.FEDSAM_ROUNDS = '0';
  process.stderr.write = ((s: string) => (writes.push(String(s)), true)) as typeof process.stderr.write;
  try {
    await program.parseAsync(['node', 'fedsam', 'server', '--min-fit', '5', '--base-model-hash', 'abcdef12', '--no-metrics']);
  } finally {
    process.stderr.write = origWrite;
    process.env = saved;
  }
  assert.equal(process.exitCode, 2);
  process.exitCode = 0;
  const msg = writes.join('');
  assert.match(msg, /rounds: Number must be greater than 0/);
  assert.match(msg, /sites\.1\.token_sha256: must be a sha256/);
});

test('collectGarbage runs a full collection without leaving gc exposed', async () => {
  const exposed = typeof (globalThis as { gc?: unknown }).gc === 'function'; // node --expose-gc
  const kinds: number[] = [];
  const obs = new PerformanceObserver((l) => {
    for (const e of l.getEntries()) kinds.push((e as unknown as { detail: { kind: number } }).detail.kind);
  });
  obs.observe({ entryTypes: ['gc'] });
  try {
    assert.equal(collectGarbage(), true);
    await new Promise((r) => setTimeout(r, 20)); // entries are delivered asynchronously
    assert.ok(kinds.includes(perfConstants.NODE_PERFORMANCE_GC_MAJOR), `expected a major collection, saw kinds [${kinds.join(', ')}]`);
  } finally {
    obs.disconnect();
  }
  if (!exposed) {
    assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined');
    assert.equal(runInNewContext('typeof gc'), 'undefined'); // the flag was unset again
  }
});

test('checksum negotiation over gRPC: Join lists the server\'s, uploads and downloads use the best common one', async () => {
  const server = await runServer(
    {
      listen: '127.0.0.1:0', rounds: 1, min_available_clients: 1, min_fit_clients: 1, round_timeout_s: 30, long_poll_s: 1,
      evaluate_every: 0, base_model_hash: FAKE_BASE_HASH, out_dir: await tempDir(), sites: sitesConfig(['site-a']), metrics: null, shutdown_grace_s: 1,
    },
    { logger: quietLogger(), initialDecoder: tinyDecoder(3) },
  );
  const conn = new Connection({ server: `127.0.0.1:${server.port}`, token: tokenFor('site-a') });
  try {
    const joined = await conn.join({ site: 'site-a', base_model_hash: FAKE_BASE_HASH, decoder: buildManifest(tinyDecoder(3)), client_version: 'test' });
    assert.deepEqual(joined.checksum_algorithms, [...CHECKSUM_ALGORITHMS]);
    assert.equal(conn.encodeUpdate(tinyDecoder(4)).manifest.checksum_algorithm, 'xxh3');
    const g = await conn.downloadGlobal();
    assert.equal(g.checksum, 'xxh3');
    for (const [name, t] of tinyDecoder(3)) assert.deepEqual(g.weights.get(name)!.data, t.data, name);
    // A site that names no checksums (older) gets crc32, which every release verifies.
    const raw = new (fedsamClientConstructor())(`127.0.0.1:${server.port}`, credentials.createInsecure()) as unknown as {
      DownloadGlobal(req: object, md: Metadata): AsyncIterable<DownloadFrame>; close(): void;
    };
    const md = new Metadata();
    md.set('authorization', `Bearer ${tokenFor('site-a')}`);
    md.set('x-fedsam-session', joined.session_id);
    const seen: string[] = [];
    for await (const f of raw.DownloadGlobal({ dtype: 'F32', expected_version: '' }, md)) {
      if (f.header) seen.push(f.header.manifest!.checksum_algorithm!);
      if (f.trailer) seen.push(f.trailer.checksum_algorithm);
    }
    assert.deepEqual(seen, ['crc32', 'crc32']);
    raw.close();
  } finally {
    conn.close();
    await server.stop('test done');
  }
});

test('box_jitter: null resolves to the base model\'s own (SAM\'s noise for the built-in model), and it reaches the site in its FitTask over gRPC', async () => {
  const dir = await tempDir();
  const common = { listen: '127.0.0.1:0', rounds: 1, min_available_clients: 1, min_fit_clients: 1, round_timeout_s: 30, long_poll_s: 1, evaluate_every: 0, metrics: null, shutdown_grace_s: 1 };
  const builtin = await runServer({ ...common, base_model: 'fedsam-tiny', out_dir: join(dir, 'a'), sites: sitesConfig(['site-a']) }, { logger: quietLogger() });
  try {
    assert.equal(builtin.config.fit.box_jitter, 'sam');
    assert.equal(builtin.config.fit.lr, 1e-3);
  } finally {
    await builtin.stop('test done');
  }
  for (const [given, wire] of [['sam', 'sam'], [12, '12'], [null, '20']] as const) {
    // an in-memory initial decoder has no base model of its own: null means the recipe's 20 px, as it does for SAM weights
    const server = await runServer(
      { ...common, base_model_hash: FAKE_BASE_HASH, out_dir: join(dir, `b${given}`), sites: sitesConfig(['site-a']), fit: { box_jitter: given } },
      { logger: quietLogger(), initialDecoder: tinyDecoder(3) },
    );
    const conn = new Connection({ server: `127.0.0.1:${server.port}`, token: tokenFor('site-a') });
    try {
      await conn.join({ site: 'site-a', base_model_hash: FAKE_BASE_HASH, decoder: buildManifest(tinyDecoder(3)), client_version: 'test' });
      let task = await conn.getTask(2000);
      for (let i = 0; i < 10 && task.kind !== 'fit'; i++) task = await conn.getTask(2000);
      assert.equal(task.kind, 'fit');
      assert.equal(task.fit!.config!.box_jitter, wire, `fit.box_jitter ${given}`);
    } finally {
      conn.close();
      await server.stop('test done');
    }
  }
});

test('a FitConfig the site cannot read (a malformed box_jitter) is abandoned with a reason naming the field, before any download or training', async () => {
  const wc = { epochs: 2, lr: 0.01, batch_size: 3, proximal_mu: 0, seed: 4, params: { scaffold: 1 } };
  assert.equal(fitConfigFromWire(wc, 1).boxJitter, 20, 'an older server: the recipe\'s noise');
  assert.equal(fitConfigFromWire({ ...wc, box_jitter: 'sam' }, 1).boxJitter, 'sam');
  assert.deepEqual(fitConfigFromWire(undefined, 3), { epochs: 1, lr: 1e-5, batchSize: 1, proximalMu: 0, seed: 0, round: 3, optimizerState: 'fresh', warmupSteps: 0, boxJitter: 20 });
  assert.throws(() => fitConfigFromWire({ ...wc, box_jitter: 'loose' }, 1), (e: unknown) => e instanceof InvalidFitConfigError && e.field === 'box_jitter');

  const logs = captureLogs();
  const server = await runServer(
    { listen: '127.0.0.1:0', rounds: 1, min_available_clients: 1, min_fit_clients: 1, round_timeout_s: 30, long_poll_s: 1, evaluate_every: 0, metrics: null,
      shutdown_grace_s: 1, base_model_hash: FAKE_BASE_HASH, out_dir: await tempDir(), sites: sitesConfig(['site-a']) },
    { logger: quietLogger(), initialDecoder: tinyDecoder(3) },
  );
  // a server this release would not send: the value goes out as it is
  (server.config.fit as { box_jitter: unknown }).box_jitter = 'loose';
  const engine = fakeEngine({ target: 0.1, delta: 1, numExamples: 3 });
  const client = runClient({ server: `127.0.0.1:${server.port}`, token: tokenFor('site-a'), site: 'site-a', engine, logger: logs.logger, backoff: { initialMs: 50, maxMs: 300 } });
  try {
    await until(() => !!logs.find('task_abandoned'), 10_000, 'the site abandons the task');
    assert.match(String(logs.find('task_abandoned')!.reason), /FitConfig\.box_jitter: .*"loose"/);
    assert.equal(engine.fits.length, 0, 'nothing trained');
  } finally {
    client.stop();
    await server.stop('test done');
    await client.done.catch(() => undefined);
  }
});
