import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CheckpointError } from '@fedsam/shared/checkpoint/errors';
import { hashWeights, WeightsHasher } from '@fedsam/shared/checkpoint/hash';
import { expectedSamParameters, SHARED_POS_EMBED_KEY, TIED_POS_EMBED_KEY } from '@fedsam/shared/checkpoint/keys';
import { loadSamCheckpoint } from '@fedsam/shared/checkpoint/load';
import { saveSamCheckpoint } from '@fedsam/shared/checkpoint/save';
import { parseSamConfig, type SamConfig } from '../shared/src/config.ts';
import { float16BitsToFloat32, float32ToFloat16Bits, readSafetensors, readSafetensorsHeader, writeSafetensors, type HostTensor } from '../shared/src/safetensors.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const TINY = join(FIXTURES, 'tiny-box');
let tmp: string;
let tinyConfig: SamConfig;
let tinyFile: Map<string, HostTensor>; // model.safetensors as stored (174 tensors, no tied key)

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fedsam-ckpt-'));
  tinyConfig = parseSamConfig(JSON.parse(await readFile(join(TINY, 'config.json'), 'utf8')));
  tinyFile = (await readSafetensors(join(TINY, 'model.safetensors'))).tensors;
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

let n = 0;
/** A fresh folder holding tiny-box's config.json and the given tensors as model.safetensors. */
async function folderWith(tensors: Map<string, HostTensor>, name = `f${n++}`): Promise<string> {
  const dir = join(tmp, name);
  await mkdir(dir, { recursive: true });
  await cp(join(TINY, 'config.json'), join(dir, 'config.json'));
  await writeSafetensors(join(dir, 'model.safetensors'), tensors);
  return dir;
}

function assertSameWeights(a: Map<string, HostTensor>, b: Map<string, HostTensor>): void {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  for (const [k, t] of a) {
    const u = b.get(k)!;
    assert.deepEqual(u.shape, t.shape, k);
    assert.equal(u.dtype, t.dtype, k);
    assert.ok(Buffer.from(u.data.buffer, u.data.byteOffset, u.data.byteLength).equals(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)), `${k} values`);
  }
}

async function rejectsCheckpoint(run: () => Promise<unknown>, ...patterns: RegExp[]): Promise<CheckpointError> {
  let err: CheckpointError | undefined;
  await assert.rejects(run, (e: unknown) => {
    assert.ok(e instanceof CheckpointError, `expected CheckpointError, got ${e}`);
    for (const p of patterns) assert.match(e.message, p);
    err = e;
    return true;
  });
  return err!;
}

describe('expectedSamParameters', () => {
  test('tiny-box: exactly the HF names and shapes of key_mapping.json', async () => {
    const km = JSON.parse(await readFile(join(TINY, 'key_mapping.json'), 'utf8')) as { hf_shapes: Record<string, number[]> };
    const exp = expectedSamParameters(tinyConfig);
    assert.deepEqual(Object.fromEntries([...exp].sort(([a], [b]) => (a < b ? -1 : 1))), Object.fromEntries(Object.entries(km.hf_shapes).sort(([a], [b]) => (a < b ? -1 : 1))));
  });

  test('decoder-vitb (sam-vit-base config): every non-vision key matches key_mapping.json', async () => {
    const km = JSON.parse(await readFile(join(FIXTURES, 'decoder-vitb', 'key_mapping.json'), 'utf8')) as { hf_shapes: Record<string, number[]> };
    const exp = expectedSamParameters(parseSamConfig({}));
    for (const [k, shape] of Object.entries(km.hf_shapes)) assert.deepEqual(exp.get(k), shape, k);
    const extra = [...exp.keys()].filter((k) => !(k in km.hf_shapes));
    assert.ok(extra.length > 0 && extra.every((k) => k.startsWith('vision_encoder.')));
    // sam-vit-base vision encoder: windowed rel-pos 2*14-1, global (layer 2) 2*64-1, head dim 64
    assert.deepEqual(exp.get('vision_encoder.layers.0.attn.rel_pos_h'), [27, 64]);
    assert.deepEqual(exp.get('vision_encoder.layers.2.attn.rel_pos_w'), [127, 64]);
    assert.equal(exp.has('vision_encoder.neck.conv1.bias'), false);
  });

  test('parameter counts of sam-vit-base / sam-vit-huge', () => {
    const count = (cfg: SamConfig, prefix: string) =>
      [...expectedSamParameters(cfg)].filter(([k]) => k.startsWith(prefix)).reduce((s, [, shape]) => s + shape.reduce((a, b) => a * b, 1), 0);
    const base = parseSamConfig({});
    assert.equal(count(base, 'vision_encoder.'), 89_670_912);
    assert.equal(count(base, 'mask_decoder.'), 4_058_340);
    const huge = parseSamConfig({ vision_config: { hidden_size: 1280, num_hidden_layers: 32, num_attention_heads: 16, global_attn_indexes: [7, 15, 23, 31] } });
    assert.equal(count(huge, 'vision_encoder.'), 637_026_048);
  });

  test('use_rel_pos=false and qkv_bias=false drop those parameters', () => {
    const cfg = parseSamConfig({ vision_config: { use_rel_pos: false, qkv_bias: false, use_abs_pos: false } });
    const keys = [...expectedSamParameters(cfg).keys()];
    assert.ok(!keys.some((k) => k.includes('rel_pos') || k.endsWith('qkv.bias') || k === 'vision_encoder.pos_embed'));
  });
});

describe('loadSamCheckpoint', () => {
  test('tiny-box: every parameter, tied positional embedding, values as stored', async () => {
    const { config, weights, files } = await loadSamCheckpoint(TINY);
    assert.deepEqual(config.vision, tinyConfig.vision);
    assert.equal(weights.size, 175);
    assert.deepEqual(files, [join(TINY, 'config.json'), join(TINY, 'model.safetensors')]);
    assert.equal(weights.get(TIED_POS_EMBED_KEY), weights.get(SHARED_POS_EMBED_KEY), 'tied: the same tensor');
    for (const [k, t] of tinyFile) assert.deepEqual(weights.get(k)!.data, t.data, k);
  });

  test('only the requested parts', async () => {
    const { weights } = await loadSamCheckpoint(TINY, { parts: ['mask_decoder'] });
    assert.ok(weights.size > 0 && [...weights.keys()].every((k) => k.startsWith('mask_decoder.')));
    const pe = await loadSamCheckpoint(TINY, { parts: ['prompt_encoder'] });
    assert.ok(pe.weights.has(TIED_POS_EMBED_KEY) && !pe.weights.has(SHARED_POS_EMBED_KEY));
    assert.deepEqual(pe.weights.get(TIED_POS_EMBED_KEY)!.data, tinyFile.get(SHARED_POS_EMBED_KEY)!.data);
  });

  test('sharded folder (index + 2 shards); unrequested shards are not read', async () => {
    const dir = join(tmp, 'sharded');
    await mkdir(dir);
    await cp(join(TINY, 'config.json'), join(dir, 'config.json'));
    const s1 = new Map<string, HostTensor>();
    const s2 = new Map<string, HostTensor>();
    for (const [k, t] of tinyFile) (k.startsWith('vision_encoder.') ? s2 : s1).set(k, t);
    await writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), s1);
    await writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), s2);
    const weight_map = Object.fromEntries([...tinyFile.keys()].map((k) => [k, k.startsWith('vision_encoder.') ? 'model-00002-of-00002.safetensors' : 'model-00001-of-00002.safetensors']));
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map }));

    const all = await loadSamCheckpoint(dir);
    const single = await loadSamCheckpoint(TINY);
    assertSameWeights(all.weights, single.weights);
    assert.equal(all.files.length, 3);
    const dec = await loadSamCheckpoint(dir, { parts: ['mask_decoder', 'prompt_encoder'] });
    assert.deepEqual(dec.files, [join(dir, 'config.json'), join(dir, 'model-00001-of-00002.safetensors')]);

    await unlink(join(dir, 'model-00002-of-00002.safetensors'));
    await rejectsCheckpoint(() => loadSamCheckpoint(dir), /shard model-00002-of-00002\.safetensors listed in model\.safetensors\.index\.json is missing/);
  });

  test('old `upsacle_layer_norm` spelling', async () => {
    const typo = new Map([...tinyFile].map(([k, t]) => [k.replace('upscale_layer_norm', 'upsacle_layer_norm'), t]));
    assert.ok(typo.has('mask_decoder.upsacle_layer_norm.weight'));
    const { weights } = await loadSamCheckpoint(await folderWith(typo));
    assert.deepEqual(weights.get('mask_decoder.upscale_layer_norm.weight')!.data, tinyFile.get('mask_decoder.upscale_layer_norm.weight')!.data);
    assert.ok(![...weights.keys()].some((k) => k.includes('upsacle')));
  });

  test('stored tied key: accepted when equal, warning (shared wins) when different, used when shared is absent', async () => {
    const shared = tinyFile.get(SHARED_POS_EMBED_KEY)!;
    const warnings: string[] = [];
    const withTied = new Map(tinyFile).set(TIED_POS_EMBED_KEY, shared);
    await loadSamCheckpoint(await folderWith(withTied), { onWarning: (m) => warnings.push(m) });
    assert.equal(warnings.length, 0);

    const other: HostTensor = { ...shared, data: shared.data.map((x) => x + 1) as Float32Array };
    const differing = new Map(tinyFile).set(TIED_POS_EMBED_KEY, other);
    const { weights } = await loadSamCheckpoint(await folderWith(differing), { onWarning: (m) => warnings.push(m) });
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /differs from shared_image_embedding\.positional_embedding/);
    assert.deepEqual(weights.get(TIED_POS_EMBED_KEY)!.data, shared.data);

    const onlyTied = new Map(tinyFile).set(TIED_POS_EMBED_KEY, shared);
    onlyTied.delete(SHARED_POS_EMBED_KEY);
    const r = await loadSamCheckpoint(await folderWith(onlyTied));
    assert.deepEqual(r.weights.get(SHARED_POS_EMBED_KEY)!.data, shared.data);
  });

  test('missing, unexpected and mismatched keys: one error listing them all', async () => {
    const bad = new Map(tinyFile);
    bad.delete('mask_decoder.iou_token.weight');
    bad.delete('vision_encoder.neck.conv2.weight');
    bad.set('mask_decoder.extra.weight', { dtype: 'float32', shape: [1], data: new Float32Array(1) });
    bad.set('pixel_mean', { dtype: 'float32', shape: [3], data: new Float32Array(3) });
    bad.set('mask_decoder.mask_tokens.weight', { dtype: 'float32', shape: [3, 32], data: new Float32Array(96) });
    const dir = await folderWith(bad);
    const e = await rejectsCheckpoint(
      () => loadSamCheckpoint(dir),
      /does not match its config/,
      /2 missing, 2 unexpected, 1 mismatched/,
      /missing \(2\): .*mask_decoder\.iou_token\.weight/,
      /missing \(2\): .*vision_encoder\.neck\.conv2\.weight/,
      /unexpected \(2\): .*mask_decoder\.extra\.weight/,
      /unexpected \(2\): .*pixel_mean/,
      /mismatched \(1\): mask_decoder\.mask_tokens\.weight: file \[3, 32\] vs config \[4, 32\]/,
      /Check that config\.json was saved with these weights/,
    );
    assert.deepEqual(e.missing.sort(), ['mask_decoder.iou_token.weight', 'vision_encoder.neck.conv2.weight']);
    // A decoder-only job is not bothered by the broken vision encoder, but still by the decoder problems.
    await rejectsCheckpoint(() => loadSamCheckpoint(dir, { parts: ['mask_decoder'] }), /1 missing, 2 unexpected, 1 mismatched/);
  });

  test('long lists are capped with a count', async () => {
    const noVision = new Map([...tinyFile].filter(([k]) => !k.startsWith('vision_encoder.')));
    const dir = await folderWith(noVision);
    const e = await rejectsCheckpoint(() => loadSamCheckpoint(dir), /missing \(\d+\): .*\.\.\. \(\d+ more\)/, /no vision_encoder\.\* weights at all/);
    assert.equal(e.missing.length, [...tinyFile.keys()].filter((k) => k.startsWith('vision_encoder.')).length);
  });

  test('original segment-anything keys get a conversion hint', async () => {
    const dir = await folderWith(new Map([['image_encoder.pos_embed', { dtype: 'float32', shape: [1], data: new Float32Array(1) } as HostTensor]]));
    await rejectsCheckpoint(() => loadSamCheckpoint(dir), /convert_sam_to_hf\.py/);
  });

  test('wrong dtype is reported', async () => {
    const bad = new Map(tinyFile).set('mask_decoder.iou_token.weight', { dtype: 'int32', shape: [1, 32], data: new Int32Array(32) });
    await rejectsCheckpoint(async () => loadSamCheckpoint(await folderWith(bad), { parts: ['mask_decoder'] }), /mask_decoder\.iou_token\.weight: dtype I32, expected a float dtype/);
  });

  test('one-line errors for a missing folder, config.json or weights', async () => {
    const e1 = await rejectsCheckpoint(() => loadSamCheckpoint(join(tmp, 'does-not-exist')), /does-not-exist does not exist/);
    assert.ok(!e1.message.includes('\n'));
    const noConfig = join(tmp, 'noconfig');
    await mkdir(noConfig);
    await cp(join(TINY, 'model.safetensors'), join(noConfig, 'model.safetensors'));
    const e2 = await rejectsCheckpoint(() => loadSamCheckpoint(noConfig), /noconfig: missing config\.json/);
    assert.ok(!e2.message.includes('\n'));
    const noWeights = join(tmp, 'noweights');
    await mkdir(noWeights);
    await cp(join(TINY, 'config.json'), join(noWeights, 'config.json'));
    const e3 = await rejectsCheckpoint(() => loadSamCheckpoint(noWeights), /noweights: missing model\.safetensors/);
    assert.ok(!e3.message.includes('\n'));
    await writeFile(join(noWeights, 'pytorch_model.bin'), 'x');
    await rejectsCheckpoint(() => loadSamCheckpoint(noWeights), /found pytorch_model\.bin/);
  });
});

describe('saveSamCheckpoint', () => {
  test('full model: same bytes as save_pretrained, no tied key, loads back identical', async () => {
    const { config, weights } = await loadSamCheckpoint(TINY);
    const dir = join(tmp, 'saved-full');
    await saveSamCheckpoint(dir, config, weights);
    assert.deepEqual((await readdir(dir)).sort(), ['config.json', 'model.safetensors']);
    const header = await readSafetensorsHeader(join(dir, 'model.safetensors'));
    assert.ok(!header.entries.has(TIED_POS_EMBED_KEY));
    assert.ok((await readFile(join(dir, 'model.safetensors'))).equals(await readFile(join(TINY, 'model.safetensors'))));
    const back = await loadSamCheckpoint(dir);
    assertSameWeights(back.weights, weights);
    assert.deepEqual(back.config.vision, config.vision);
    assert.deepEqual(back.config.prompt, config.prompt);
    assert.deepEqual(back.config.decoder, config.decoder);
    // no temp folders left next to it
    assert.deepEqual((await readdir(tmp)).filter((f) => f.includes('.tmp-')), []);
  });

  test('decoder-only folder (mask_decoder.* only) loads when only the decoder is requested', async () => {
    const { config, weights } = await loadSamCheckpoint(TINY);
    const dir = join(tmp, 'saved-dec');
    await saveSamCheckpoint(dir, config, weights, { only: 'mask_decoder' });
    const header = await readSafetensorsHeader(join(dir, 'model.safetensors'));
    assert.ok([...header.entries.keys()].every((k) => k.startsWith('mask_decoder.')));
    const back = await loadSamCheckpoint(dir, { parts: ['mask_decoder'] });
    assertSameWeights(back.weights, new Map([...weights].filter(([k]) => k.startsWith('mask_decoder.'))));
    await rejectsCheckpoint(() => loadSamCheckpoint(dir, { parts: ['mask_decoder', 'prompt_encoder'] }), /missing/, /no prompt_encoder\.\* weights at all/);
  });

  test('decoder-vitb-style folder (no vision encoder) round trip', async () => {
    const parts = ['prompt_encoder', 'mask_decoder', 'shared_image_embedding'] as const;
    const { config, weights } = await loadSamCheckpoint(TINY, { parts: [...parts] });
    const dir = join(tmp, 'saved-novision');
    await saveSamCheckpoint(dir, config, weights);
    const back = await loadSamCheckpoint(dir, { parts: [...parts] });
    assertSameWeights(back.weights, weights);
    const e = await rejectsCheckpoint(() => loadSamCheckpoint(dir), /missing \(\d+\)/, /no vision_encoder\.\* weights at all/);
    assert.ok(e.missing.every((k) => k.startsWith('vision_encoder.')));
    // prompt encoder only (tied key, no shared_image_embedding) still saves the shared name
    const pe = await loadSamCheckpoint(TINY, { parts: ['prompt_encoder'] });
    const dir2 = join(tmp, 'saved-pe');
    await saveSamCheckpoint(dir2, config, pe.weights);
    const h = await readSafetensorsHeader(join(dir2, 'model.safetensors'));
    assert.ok(h.entries.has(SHARED_POS_EMBED_KEY) && !h.entries.has(TIED_POS_EMBED_KEY));
  });

  test('float16 save: values rounded to half precision', async () => {
    const { config, weights } = await loadSamCheckpoint(TINY, { parts: ['mask_decoder'] });
    const dir = join(tmp, 'saved-f16');
    await saveSamCheckpoint(dir, config, weights, { only: 'mask_decoder', float16: true });
    const header = await readSafetensorsHeader(join(dir, 'model.safetensors'));
    assert.ok([...header.entries.values()].every((e) => e.dtype === 'F16'));
    const back = await loadSamCheckpoint(dir, { parts: ['mask_decoder'] });
    for (const [k, t] of weights) {
      const r = back.weights.get(k)!;
      for (let i = 0; i < t.data.length; i++) assert.equal(r.data[i], float16BitsToFloat32(float32ToFloat16Bits(t.data[i]!)), k);
    }
  });

  test('overwriting an existing (sharded) folder replaces it cleanly', async () => {
    const { config, weights } = await loadSamCheckpoint(TINY);
    const dir = join(tmp, 'overwrite');
    await mkdir(dir);
    await writeFile(join(dir, 'model-00001-of-00001.safetensors'), 'stale');
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: 'model-00001-of-00001.safetensors' } }));
    await writeFile(join(dir, 'README.md'), 'keep me');
    await saveSamCheckpoint(dir, config, weights, { only: 'mask_decoder' });
    assert.deepEqual((await readdir(dir)).sort(), ['README.md', 'config.json', 'model.safetensors']);
    const mod = new Map(weights);
    const t = weights.get('mask_decoder.iou_token.weight')!;
    mod.set('mask_decoder.iou_token.weight', { ...t, data: new Float32Array(t.data.length).fill(0.5) });
    await saveSamCheckpoint(dir, config, mod, { only: 'mask_decoder' });
    const back = await loadSamCheckpoint(dir, { parts: ['mask_decoder'] });
    assert.deepEqual([...back.weights.get('mask_decoder.iou_token.weight')!.data], new Array(32).fill(0.5));
  });

  test('refuses incomplete, unknown or misshapen weights', async () => {
    const { config, weights } = await loadSamCheckpoint(TINY);
    const bad = new Map(weights);
    bad.delete('mask_decoder.iou_token.weight');
    bad.set('mask_decoder.mask_tokens.weight', { dtype: 'float32', shape: [2, 32], data: new Float32Array(64) });
    bad.set('foo.bar', { dtype: 'float32', shape: [1], data: new Float32Array(1) });
    const dir = join(tmp, 'refused');
    await rejectsCheckpoint(() => saveSamCheckpoint(dir, config, bad), /1 missing, 1 unexpected, 1 mismatched/, /iou_token/, /foo\.bar/, /mask_tokens\.weight: \[2, 32\] vs config \[4, 32\]/);
    await assert.rejects(readdir(dir), /ENOENT/);
  });
});

describe('hashWeights', () => {
  test('stable, order independent, prefix scoped, value sensitive', async () => {
    const { weights } = await loadSamCheckpoint(TINY);
    const h = hashWeights(weights, 'vision_encoder.');
    assert.match(h, /^[0-9a-f]{64}$/);
    assert.equal(hashWeights(new Map([...weights].reverse()), 'vision_encoder.'), h);
    // the same weights read from another folder layout hash the same
    const dir = join(tmp, 'hash-copy');
    await saveSamCheckpoint(dir, (await loadSamCheckpoint(TINY)).config, weights);
    assert.equal(hashWeights((await loadSamCheckpoint(dir)).weights, 'vision_encoder.'), h);
    // decoder changes do not touch the encoder hash; encoder changes do
    const dec = new Map(weights);
    const t = weights.get('mask_decoder.iou_token.weight')!;
    dec.set('mask_decoder.iou_token.weight', { ...t, data: t.data.map((x) => x + 1) as Float32Array });
    assert.equal(hashWeights(dec, 'vision_encoder.'), h);
    assert.notEqual(hashWeights(dec, 'mask_decoder.'), hashWeights(weights, 'mask_decoder.'));
    const enc = new Map(weights);
    const v = weights.get('vision_encoder.pos_embed')!;
    const changed = Float32Array.from(v.data);
    changed[5] = changed[5]! + 1e-7;
    enc.set('vision_encoder.pos_embed', { ...v, data: changed });
    assert.notEqual(hashWeights(enc, 'vision_encoder.'), h);
    // shape is part of the hash
    const reshaped = new Map(weights).set('vision_encoder.pos_embed', { ...v, shape: [1, 64, 32] });
    assert.notEqual(hashWeights(reshaped, 'vision_encoder.'), h);
    // streaming hasher gives the same digest
    const hasher = new WeightsHasher();
    for (const [k, x] of weights) if (k.startsWith('vision_encoder.')) hasher.add(k, x);
    assert.equal(hasher.digest(), h);
  });
});
