// The ONNX Runtime engine: parity with the golden tensors, agreement with tfjs on the built-in model, the on-disk
// graph cache (atomic writes, corrupt and truncated copies rebuilt), and the fallback when ONNX Runtime cannot load.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, truncate, writeFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { initBackend } from '@fedsam/shared/backend';
import { verifyReferenceFolder } from '@fedsam/shared/reference';
import { loadModel } from '@fedsam/shared/model/presets';
import { lowResSize } from '@fedsam/client/engine/trainer';
import { createInference } from '@fedsam/shared/samInference';
import { chooseEngine, parseEngineName, TfjsInference } from '@fedsam/shared/inference';
import { cachedGraphSession, graphKey } from '@fedsam/shared/onnx/graphCache';
import { buildVisionGraph } from '@fedsam/shared/onnx/visionGraph';
import { OnnxSamInference } from '@fedsam/shared/onnx/samOnnx';
import { tinySamWeights } from '@fedsam/shared/model/presets';
import { ModelProto } from '@fedsam/shared/onnx/schema';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FEDSAM = join(ROOT, 'bin', 'fedsam.mjs');
await initBackend();

function fedsam(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [FEDSAM, ...args], { env: { ...process.env, FEDSAM_LOG_LEVEL: 'info', ...env }, maxBuffer: 1 << 24 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

for (const folder of ['tiny-box', 'tiny-train']) {
  test(`verify-reference on onnx: ${folder} within the fixture's tolerances`, async () => {
    const { rows } = await verifyReferenceFolder(join(ROOT, 'test/fixtures', folder), 'onnx');
    assert.ok(rows.length >= 17);
    const bad = rows.filter((r) => !r.pass);
    assert.deepEqual(bad.map((r) => `${r.tensor}: ${r.maxAbs}`), []);
  });
}

test('the two engines embed and decode the built-in model alike (cache entries are interchangeable)', async () => {
  const loaded = await loadModel(undefined, { visionOnHost: false }); // the tfjs encoder runs too
  const S = loaded.config.vision.image_size;
  const px = new Float32Array(3 * S * S);
  for (let i = 0; i < px.length; i++) px[i] = Math.sin(i * 0.37) * 1.7;
  const onnx = createInference(loaded, { engine: 'onnx', graphCacheDir: null });
  const tfjs = new TfjsInference(loaded.model);
  try {
    const a = await onnx.embed({ data: px, shape: [1, 3, S, S] });
    const b = await tfjs.embed({ data: px, shape: [1, 3, S, S] });
    assert.deepEqual(a.shape, b.shape);
    let maxAbs = 0, maxG = 0;
    for (let i = 0; i < a.data.length; i++) { maxAbs = Math.max(maxAbs, Math.abs(a.data[i] - b.data[i])); maxG = Math.max(maxG, Math.abs(b.data[i])); }
    assert.ok(maxAbs < 1e-4 * Math.max(1, maxG), `embeddings differ by ${maxAbs}`);
    // the decoder from one engine's embedding, with a box and two points, multimask on
    const inp = {
      embeddingsNHWC: b, multimask: true,
      inputBoxes: { data: Float32Array.of(30, 40, 150, 170), shape: [1, 1, 4] },
      inputPoints: { data: Float32Array.of(80, 90, 10, 12), shape: [1, 1, 2, 2] },
      inputLabels: { data: Int32Array.of(1, 0), shape: [1, 1, 2] },
    };
    const x = await onnx.decode(inp);
    const y = await tfjs.decode(inp);
    const lowRes = lowResSize(loaded);
    assert.deepEqual(x.predMasks.shape, [1, 1, 3, lowRes, lowRes]);
    assert.deepEqual(x.predMasks.shape, y.predMasks.shape);
    let m = 0;
    for (let i = 0; i < x.predMasks.data.length; i++) m = Math.max(m, Math.abs(x.predMasks.data[i] - y.predMasks.data[i]));
    assert.ok(m < 1e-3, `mask logits differ by ${m}`);
    for (let i = 0; i < 3; i++) assert.ok(Math.abs(x.iouScores.data[i] - y.iouScores.data[i]) < 1e-4);
  } finally {
    await onnx.dispose();
    loaded.model.dispose();
  }
});

test('decoder sessions follow the decoder weights when training replaces them', async () => {
  const loaded = await loadModel(undefined);
  assert.ok(loaded.visionHost?.size && ![...loaded.model.weights.keys()].some((n) => n.startsWith('vision_encoder.')), 'onnx engine: vision weights stay on the host');
  const onnx = createInference(loaded, { engine: 'onnx', graphCacheDir: null });
  try {
    const s = loaded.config.prompt.imageEmbeddingSize, C = loaded.config.prompt.hidden_size;
    const emb = { data: new Float32Array(s * s * C).map((_, i) => Math.cos(i)), shape: [1, s, s, C] };
    const inp = { embeddingsNHWC: emb, multimask: false, inputBoxes: { data: Float32Array.of(10, 10, 100, 120), shape: [1, 1, 4] } };
    const before = await onnx.decode(inp);
    const { setDecoderFromHost, decoderToHost } = await import('@fedsam/client/engine/decoderWeights');
    const w = decoderToHost(loaded);
    const bias = w.get('mask_decoder.iou_prediction_head.proj_out.bias')!;
    (bias.data as Float32Array)[0] += 1;
    setDecoderFromHost(loaded, w);
    const after = await onnx.decode(inp);
    assert.ok(Math.abs(after.iouScores.data[0] - before.iouScores.data[0] - 1) < 1e-5);
  } finally {
    await onnx.dispose();
    loaded.model.dispose();
  }
});

test('the ONNX model is a well-formed ModelProto with HF-named initializers and opset 17', async () => {
  const { config, weights } = await tinySamWeights();
  const bytes = buildVisionGraph(config, weights).encode();
  const m = ModelProto.toObject(ModelProto.decode(bytes), { longs: Number }) as any;
  assert.equal(m.irVersion, 8);
  assert.deepEqual(m.opsetImport.find((o: any) => !o.domain).version, 17);
  const names = new Set(m.graph.initializer.map((t: any) => t.name));
  for (const n of ['vision_encoder.patch_embed.projection.weight', 'vision_encoder.layers.0.mlp.lin1.weight', 'vision_encoder.neck.conv2.weight']) assert.ok(names.has(n), n);
  assert.deepEqual(m.graph.input.map((i: any) => i.name), ['pixel_values']);
});

test('graph cache: built once, read after; truncated or corrupt copies are rebuilt; a failed build leaves nothing', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-onnx-cache-'));
  const { config, weights } = await tinySamWeights();
  const key = graphKey('vision', 'test-hash', {});
  let builds = 0;
  const events: string[] = [];
  const build = () => { builds++; return buildVisionGraph(config, weights); };
  const open = () => cachedGraphSession(dir, key, 'test graph', build, { onEvent: (e) => events.push(e.event) });
  await (await open()).release();
  await (await open()).release();
  assert.equal(builds, 1);
  assert.deepEqual(events, ['built', 'hit']);
  assert.deepEqual((await readdir(dir)).sort(), [key]);
  // truncated weights file
  const data = join(dir, key, 'model.onnx.data');
  await truncate(data, (await stat(data)).size - 100);
  await (await open()).release();
  assert.equal(builds, 2);
  assert.equal(events.at(-2), 'invalid');
  // garbage of the right size (complete.json still matches): ORT refuses it, the entry is rebuilt
  const model = join(dir, key, 'model.onnx');
  const size = (await stat(model)).size;
  await writeFile(model, Buffer.alloc(size, 0x5a));
  await (await open()).release();
  assert.equal(builds, 3);
  assert.deepEqual(events.slice(-2), ['invalid', 'rebuilt']);
  // a build that fails leaves neither the entry nor a temporary folder
  const key2 = graphKey('vision', 'other', {});
  await assert.rejects(cachedGraphSession(dir, key2, 'failing graph', () => { throw new Error('boom'); }), /boom/);
  assert.deepEqual((await readdir(dir)).sort(), [key]);
  // an engine with this cache reads the graph from it
  const loaded = await loadModel(undefined);
  const inf = new OnnxSamInference({ config: loaded.config, weights: { host: () => { throw new Error('weights should not be needed on a cache hit'); }, decoderVersion: () => [] }, visionHash: loaded.visionHash, cacheDir: dir });
  await assert.rejects(inf.embed({ data: new Float32Array(3 * 256 * 256), shape: [1, 3, 256, 256] }), /weights should not be needed/);
  await inf.dispose();
  loaded.model.dispose();
});

test('engine choice: names, env, and the fallback when ONNX Runtime does not load', async () => {
  assert.equal(parseEngineName('ONNX'), 'onnx');
  assert.equal(parseEngineName('tfjs'), 'tfjs');
  assert.throws(() => parseEngineName('torch'), /use onnx or tfjs/);
  assert.equal(chooseEngine('tfjs').name, 'tfjs');
  assert.equal(chooseEngine().name, process.env.FEDSAM_ENGINE === 'tfjs' ? 'tfjs' : 'onnx');

  const dir = await mkdtemp(join(tmpdir(), 'fedsam-onnx-fallback-'));
  const img = join(dir, 'img.png');
  const px = Buffer.alloc(96 * 64 * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 7) % 251;
  await sharp(px, { raw: { width: 96, height: 64, channels: 3 } }).png().toFile(img);
  const env = { FEDSAM_ONNX_CACHE: join(dir, 'onnx') };
  const ok = await fedsam(['predict', '--image', img, '--box', '20,10,70,50', '--out', join(dir, 'a.png')], env);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stderr, /"engine":"onnx"/);
  const broken = { ...env, FEDSAM_ORT_MODULE: join(dir, 'no-such-onnxruntime.node') };
  const fb = await fedsam(['predict', '--image', img, '--box', '20,10,70,50', '--out', join(dir, 'b.png')], broken);
  assert.equal(fb.code, 0, fb.stderr);
  assert.match(fb.stderr, /"engine":"tfjs","reason":"ONNX Runtime unavailable/);
  // same mask from both engines
  assert.deepEqual(await readFile(join(dir, 'a.png')), await readFile(join(dir, 'b.png')));
  const forced = await fedsam(['--engine', 'onnx', 'predict', '--image', img, '--box', '20,10,70,50', '--out', join(dir, 'c.png')], broken);
  assert.equal(forced.code, 1);
  assert.match(forced.stderr, /fedsam: error: engine onnx was requested \(--engine\) but ONNX Runtime cannot start: .*use --engine tfjs/);
});

test('a transformers.js SAM folder (onnx/vision_encoder.onnx + onnx/prompt_encoder_mask_decoder.onnx) predicts like the HF folder', async () => {
  const { buildDecoderGraph } = await import('@fedsam/shared/onnx/decoderGraph');
  const { samConfigToJson } = await import('@fedsam/shared/config');
  const { mkdir } = await import('node:fs/promises');
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-tjs-'));
  // Our builder writes both files with transformers.js's I/O signature (NCHW embeddings, positional embeddings from
  // the encoder, int64 labels, three multimask outputs); the decoder here takes 1 point + a box.
  const { config, weights } = await tinySamWeights();
  const folder = join(dir, 'sam-tjs');
  await mkdir(join(folder, 'onnx'), { recursive: true });
  await writeFile(join(folder, 'onnx', 'vision_encoder.onnx'), buildVisionGraph(config, weights, { layout: 'nchw', positionalOutput: true }).encode());
  await writeFile(join(folder, 'onnx', 'prompt_encoder_mask_decoder.onnx'),
    buildDecoderGraph(config, weights, { points: 1, boxes: true, masks: false, multimask: true }, { layout: 'nchw' }).encode());
  await writeFile(join(folder, 'config.json'), JSON.stringify(samConfigToJson(config)));
  const img = join(dir, 'img.png');
  const px = Buffer.alloc(120 * 90 * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 13) % 241;
  await sharp(px, { raw: { width: 120, height: 90, channels: 3 } }).png().toFile(img);
  const args = ['--image', img, '--box', '20,15,90,70', '--point', '50,40,1', '--multimask'];
  const env = { FEDSAM_ONNX_CACHE: join(dir, 'cache') };
  const a = await fedsam(['predict', '--model', folder, ...args, '--out', join(dir, 'tjs.png')], env);
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stderr, /transformers.js SAM folder/);
  const b = await fedsam(['predict', ...args, '--out', join(dir, 'hf.png')], env);
  assert.equal(b.code, 0, b.stderr);
  assert.equal(/predicted IoU: (\S+)/.exec(a.stdout)![1], /predicted IoU: (\S+)/.exec(b.stdout)![1]);
  assert.deepEqual(await readFile(join(dir, 'tjs.png')), await readFile(join(dir, 'hf.png')));
  // without --multimask the export's 3 outputs are reduced to the best-scored one (with a warning)
  const c = await fedsam(['predict', '--model', folder, '--image', img, '--box', '20,15,90,70', '--point', '50,40,1', '--out', join(dir, 'c.png')], env);
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stderr, /returns the 3 multimask outputs only/);
  // a decoder without input_boxes refuses a box prompt clearly
  await writeFile(join(folder, 'onnx', 'prompt_encoder_mask_decoder.onnx'),
    buildDecoderGraph(config, weights, { points: 1, boxes: false, masks: false, multimask: true }, { layout: 'nchw' }).encode());
  const d = await fedsam(['predict', '--model', folder, '--image', img, '--box', '20,15,90,70', '--out', join(dir, 'd.png')], env);
  assert.equal(d.code, 1);
  assert.match(d.stderr, /takes no input_boxes/);
  // a truncated encoder file: one clear line naming it
  const enc = join(folder, 'onnx', 'vision_encoder.onnx');
  await truncate(enc, Math.floor((await stat(enc)).size / 2));
  const e = await fedsam(['predict', '--model', folder, '--image', img, '--point', '50,40,1', '--box', '20,15,90,70', '--out', join(dir, 'e.png')], env);
  assert.equal(e.code, 1);
  assert.match(e.stderr, /fedsam: error: ONNX Runtime could not load the transformers.js vision encoder .*vision_encoder\.onnx/);
});
