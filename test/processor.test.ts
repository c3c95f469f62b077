// SamProcessor parity (HF SamImageProcessor/SamProcessor slow path with Pillow 9.4) and image I/O.
// Golden data: test/fixtures/processor (extracted from sam-reference/processor by extract.ts).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { initBackend } from '../shared/src/backend.ts';
import { readSafetensors, writeSafetensors, type HostTensor } from '../shared/src/safetensors.ts';
import { processorParity } from '../shared/src/processorParity.ts';
import { overlayMask, readImageRGB, writeMaskPng, writeOverlayPng } from '../shared/src/image.ts';
import {
  SamProcessor,
  getPreprocessShape,
  pixelValuesTensor,
  postProcessMasks,
  preparePrompts,
  promptTensors,
  rescaleBoxes,
  rescalePoints,
  pixelValuesFromResized,
  type SizeHW,
} from '../shared/src/processor.ts';
import { resizeBilinearPillow } from '../shared/src/resample/pillowBilinear.ts';
import { resizeBilinearTorch } from '../shared/src/resample/torchBilinear.ts';

const FIX = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'processor');
let expected: { sha256: Record<string, string>; images: Array<{ file: string; original_size: SizeHW; reshaped_input_size: SizeHW; pixel_values_stats_full: Stats; pixel_values_stats_valid: Stats }> };
let manifest: any;
let gold: Map<string, HostTensor>;
let tmp: string;
interface Stats { mean: number[]; std: number[]; min: number[]; max: number[] }

const sha = (a: ArrayBufferView) => createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex');
const g = (n: string) => {
  const t = gold.get(n);
  assert.ok(t, `fixture tensor ${n}`);
  return t;
};

before(async () => {
  await initBackend();
  expected = JSON.parse(await readFile(join(FIX, 'expected.json'), 'utf8'));
  manifest = JSON.parse(await readFile(join(FIX, 'manifest.json'), 'utf8'));
  gold = (await readSafetensors(join(FIX, 'expected.safetensors'))).tensors;
  tmp = await mkdtemp(join(tmpdir(), 'fedsam-processor-'));
  process.on('exit', () => void rm(tmp, { recursive: true, force: true }));
});

function diffU8(a: Uint8Array, b: ArrayLike<number>) {
  let sum = 0, max = 0, neq = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    sum += d;
    if (d > max) max = d;
    if (d) neq++;
  }
  return { meanAbs: sum / a.length, maxAbs: max, neq };
}
function stridedHWC(a: Uint8Array, H: number, W: number, s: number): Uint8Array {
  const h = Math.ceil(H / s), w = Math.ceil(W / s);
  const out = new Uint8Array(h * w * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) out[(y * w + x) * 3 + c] = a[(y * s * W + x * s) * 3 + c]!;
  return out;
}
function stridedCHW(a: Float32Array, C: number, H: number, W: number, s: number): Float32Array {
  const h = Math.ceil(H / s), w = Math.ceil(W / s);
  const out = new Float32Array(C * h * w);
  for (let c = 0; c < C; c++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[(c * h + y) * w + x] = a[(c * H + y * s) * W + x * s]!;
  return out;
}
function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>) {
  assert.equal(a.length, b.length);
  let m = 0, s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (d > m) m = d;
    s += d;
  }
  return { max: m, mean: s / a.length };
}

// ---------------------------------------------------------------------------------------------------------------
// decode + resize + normalize vs Pillow/HF

for (const name of ['truck', 'groceries']) {
  test(`${name}: sharp JPEG decode vs PIL decoded_rgb_uint8`, async (t) => {
    const img = await readImageRGB(join(FIX, `${name}.jpg`));
    const shape = (expected as any).shapes?.[`${name}.decoded_rgb_uint8`] ?? manifest.tensors[`${name}.decoded_rgb_uint8`].shape;
    assert.deepEqual([img.height, img.width, 3], shape);
    const sample = g(`${name}.decoded_rgb_uint8_stride8`);
    const d = diffU8(stridedHWC(img.data, img.height, img.width, 8), sample.data);
    const exact = sha(img.data) === expected.sha256[`${name}.decoded_rgb_uint8`];
    t.diagnostic(`decode ${name}: exact=${exact}; stride-8 sample mean|d|=${d.meanAbs} max|d|=${d.maxAbs}`);
    assert.ok(d.meanAbs < 1, `mean abs decode difference ${d.meanAbs} >= 1 level`);
    // sharp 0.34's libjpeg-turbo (mozjpeg build) decodes bit-identically to Pillow 9.4/libjpeg-turbo 2.1.5.
    assert.ok(exact, 'decoded image differs from PIL (hash)');
  });

  test(`${name}: Pillow BILINEAR resize is bit-exact (from PIL's decoded image)`, async () => {
    const img = await readImageRGB(join(FIX, `${name}.jpg`));
    // Our decode equals PIL's (hash above), so this input IS PIL's decoded image.
    assert.equal(sha(img.data), expected.sha256[`${name}.decoded_rgb_uint8`]);
    const [h, w] = getPreprocessShape([img.height, img.width], 1024);
    const exp = expected.images.find((i) => i.file === `${name}.jpg`)!;
    assert.deepEqual([h, w], exp.reshaped_input_size);
    const r = resizeBilinearPillow(img.data, img.width, img.height, 3, w, h);
    const d = diffU8(stridedHWC(r, h, w, 8), g(`${name}.resized_rgb_uint8_stride8`).data);
    assert.equal(d.maxAbs, 0, `stride-8 sample differs: ${JSON.stringify(d)}`);
    assert.equal(sha(r), expected.sha256[`${name}.resized_rgb_uint8`]);
  });
}

test('resize speed: 1200x1800 -> 683x1024', async (t) => {
  const img = await readImageRGB(join(FIX, 'truck.jpg'));
  let best = Infinity;
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    resizeBilinearPillow(img.data, img.width, img.height, 3, 1024, 683);
    best = Math.min(best, performance.now() - t0);
  }
  t.diagnostic(`best of 5: ${best.toFixed(1)} ms`);
  assert.ok(best < 1000, `resize took ${best} ms`);
});

test('resize: specialised paths agree with the generic per-channel path', () => {
  const W = 37, H = 23;
  const rgb = new Uint8Array(W * H * 3);
  let s = 12345;
  for (let i = 0; i < rgb.length; i++) rgb[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
  for (const [ow, oh] of [[20, 11], [64, 50], [37, 9], [10, 23], [37, 23], [5, 3], [1, 1], [36, 22], [74, 12]] as const) {
    const all = resizeBilinearPillow(rgb, W, H, 3, ow, oh);
    for (let c = 0; c < 3; c++) {
      const ch = new Uint8Array(W * H);
      for (let i = 0; i < W * H; i++) ch[i] = rgb[i * 3 + c]!;
      const one = resizeBilinearPillow(ch, W, H, 1, ow, oh);
      for (let i = 0; i < ow * oh; i++) assert.equal(all[i * 3 + c], one[i], `${ow}x${oh} channel ${c} pixel ${i}`);
    }
  }
  // identity is a copy
  const same = resizeBilinearPillow(rgb, W, H, 3, W, H);
  assert.deepEqual(same, rgb);
  assert.notEqual(same, rgb);
  // constant image stays constant (weights sum to 1 in fixed point)
  const flat = new Uint8Array(W * H * 3).fill(200);
  assert.ok(resizeBilinearPillow(flat, W, H, 3, 100, 7).every((v) => v === 200));
});

test('truck: pixel_values from the JPEG (HF float path)', async (t) => {
  const proc = await SamProcessor.fromFolder(FIX);
  assert.equal(proc.configSource, join(FIX, 'preprocessor_config.json'));
  const pre = await proc.preprocess(join(FIX, 'truck.jpg'));
  assert.deepEqual(pre.shape, [1, 3, 1024, 1024]);
  assert.deepEqual(pre.originalSize, [1200, 1800]);
  assert.deepEqual(pre.reshapedInputSize, [683, 1024]);
  assert.deepEqual(Array.from(g('truck.original_sizes').data), [1200, 1800]);
  assert.deepEqual(Array.from(g('truck.reshaped_input_sizes').data), [683, 1024]);
  const d = maxAbs(stridedCHW(pre.pixelValues, 3, 1024, 1024, 16), g('truck.pixel_values_stride16').data);
  const exact = sha(pre.pixelValues) === expected.sha256['truck.pixel_values'];
  t.diagnostic(`pixel_values: exact=${exact}; stride-16 sample max|d|=${d.max} mean|d|=${d.mean}`);
  assert.ok(d.mean <= 0.01, `mean abs error ${d.mean}`);
  assert.ok(d.max <= 1e-6, `max abs error ${d.max}`);
  assert.ok(exact, 'pixel_values differ from HF (hash)');
  // padding is zero
  assert.equal(pre.pixelValues[700 * 1024 + 5], 0);
});

test('groceries: pixel_values stats and stride-16 sample (upscaling path)', async () => {
  const proc = await SamProcessor.fromFolder(FIX);
  const pre = await proc.preprocess(await readFile(join(FIX, 'groceries.jpg')));
  assert.deepEqual(pre.reshapedInputSize, [684, 1024]);
  const d = maxAbs(stridedCHW(pre.pixelValues, 3, 1024, 1024, 16), g('groceries.pixel_values_stride16').data);
  assert.ok(d.max <= 1e-6, `max abs ${d.max}`);
  const exp = expected.images.find((i) => i.file === 'groceries.jpg')!;
  for (let c = 0; c < 3; c++) {
    let s = 0, s2 = 0;
    for (let i = c * 1024 * 1024; i < (c + 1) * 1024 * 1024; i++) {
      s += pre.pixelValues[i]!;
      s2 += pre.pixelValues[i]! ** 2;
    }
    const mean = s / 1024 ** 2;
    assert.ok(Math.abs(mean - exp.pixel_values_stats_full.mean[c]!) < 1e-6, `mean ch${c}`);
    assert.ok(Math.abs(Math.sqrt(s2 / 1024 ** 2 - mean * mean) - exp.pixel_values_stats_full.std[c]!) < 1e-6, `std ch${c}`);
  }
});

test('pixelValuesTensor: NCHW tf tensor, no leaks', async () => {
  const proc = new SamProcessor();
  const img = { data: new Uint8Array(40 * 30 * 3).fill(128), width: 40, height: 30 };
  const pre = proc.preprocessRGB(img);
  assert.deepEqual(pre.reshapedInputSize, [768, 1024]);
  const before = tf.memory().numTensors;
  const x = pixelValuesTensor([pre, pre]);
  assert.deepEqual(x.shape, [2, 3, 1024, 1024]);
  const v = x.slice([1, 2, 0, 0], [1, 1, 1, 1]).dataSync()[0]!;
  assert.ok(Math.abs(v - (128 / 255 - 0.406) / 0.225) < 1e-5);
  tf.dispose(x);
  // slice result disposed too
  assert.ok(tf.memory().numTensors <= before + 1);
});

// ---------------------------------------------------------------------------------------------------------------
// prompts

test('prompts: boxes/points rescaled like SamProcessor (manifest float64 values)', () => {
  const sizes = new Map(expected.images.map((i) => [i.file, i]));
  for (const p of manifest.prompts) {
    const im = sizes.get(p.image)!;
    const arr = preparePrompts([{ points: p.raw.points, labels: p.raw.labels, boxes: p.raw.boxes }], [im.original_size], [im.reshaped_input_size]);
    for (const [field, spec] of Object.entries<any>(p.outputs)) {
      const ours = (arr as any)[field];
      assert.deepEqual(ours.shape, spec.shape, `${p.image} ${p.name} ${field} shape`);
      const exact = (spec.exact_values as unknown[]).flat(4) as number[];
      const vals = ((arr.values as any)[field] as unknown[]).flat(4) as number[];
      const stored = g(spec.tensor).data;
      for (let i = 0; i < exact.length; i++) {
        if (field === 'input_labels') {
          assert.equal(vals[i], exact[i]);
          assert.equal(ours.data[i], exact[i]);
        } else {
          assert.ok(Math.abs(vals[i]! - exact[i]!) <= 1e-9, `${p.name} ${field}[${i}] ${vals[i]} vs ${exact[i]}`);
          assert.ok(Math.abs(ours.data[i] - exact[i]!) <= 1e-3);
          assert.ok(Math.abs(ours.data[i] - stored[i]!) <= 1e-3);
        }
      }
    }
  }
  // direct helpers
  assert.deepEqual(rescalePoints([[500, 375]], [1200, 1800], [683, 1024]), [[284.44444444444446, 213.43750000000003]]);
  assert.deepEqual(rescaleBoxes([[425, 600, 700, 875]], [1200, 1800], [683, 1024]), [[241.77777777777777, 341.5, 398.22222222222223, 498.02083333333337]]);
  // HF casts boxes to float32 before scaling
  assert.equal(rescaleBoxes([[0.1, 0, 0, 0]], [10, 10], [10, 10])[0]![0], Math.fround(0.1));
});

test('prompts: unequal point counts padded with -10 / label -10 (after rescaling)', () => {
  const arr = preparePrompts(
    [{ points: [[40, 50], [80, 90]], labels: [1, 0] }, { points: [[30, 60]], labels: [1] }],
    [[128, 128], [256, 128]],
    [[128, 128], [128, 64]],
  );
  assert.deepEqual(arr.input_points!.shape, [2, 1, 2, 2]);
  assert.deepEqual(arr.input_labels!.shape, [2, 1, 2]);
  assert.deepEqual(Array.from(arr.input_points!.data), [40, 50, 80, 90, 15, 30, -10, -10]);
  assert.deepEqual(Array.from(arr.input_labels!.data), [1, 0, 1, -10]);
  // [pb][N][2] form, default labels 1, boxes [B, nb, 4]
  const a2 = preparePrompts([{ points: [[[1, 2]], [[3, 4]]], boxes: [[0, 0, 10, 10], [1, 1, 2, 2]] }], [[100, 100]], [[200, 200]]);
  assert.deepEqual(a2.input_points!.shape, [1, 2, 1, 2]);
  assert.deepEqual(Array.from(a2.input_labels!.data), [1, 1]);
  assert.deepEqual(a2.input_boxes!.shape, [1, 2, 4]);
  assert.deepEqual(Array.from(a2.input_boxes!.data), [0, 0, 20, 20, 2, 2, 4, 4]);
  const before = tf.memory().numTensors;
  const ts = promptTensors(arr);
  assert.equal(ts.input_labels!.dtype, 'int32');
  assert.deepEqual(ts.input_points!.shape, [2, 1, 2, 2]);
  tf.dispose([ts.input_points!, ts.input_labels!]);
  assert.equal(tf.memory().numTensors, before);
  assert.throws(() => preparePrompts([{ points: [[1, 2]], labels: [1, 0] }], [[10, 10]], [[10, 10]]), /2 labels/);
});

test('SamProcessor.prompts uses the resize shape', async () => {
  const proc = await SamProcessor.fromFolder(FIX);
  const arr = proc.prompts({ boxes: [[75, 275, 1725, 850]], points: [[575, 750]], labels: [1] }, [1200, 1800]);
  const exact = manifest.prompts.find((p: any) => p.image === 'truck.jpg' && p.name === 'box_points').outputs;
  assert.deepEqual(arr.values.input_boxes, exact.input_boxes.exact_values);
  assert.deepEqual(arr.values.input_points, exact.input_points.exact_values);
});

// ---------------------------------------------------------------------------------------------------------------
// post_process_masks

function unpackBits(p: ArrayLike<number>, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (p[i >> 3]! >> (7 - (i & 7))) & 1;
  return out;
}

test('post_process_masks: intermediate 1024x1024 upscale matches torch (atol 1e-4)', () => {
  const low = g('post.low_res_logits');
  const up = resizeBilinearTorch(low.data as Float32Array, 256, 256, 1024, 1024);
  const d = maxAbs(stridedCHW(up, 1, 1024, 1024, 4), g('post.upscaled_1024_stride4').data);
  assert.ok(d.max <= 1e-4, `max ${d.max}`);
});

for (const impl of ['js', 'tf'] as const) {
  test(`post_process_masks (${impl}): float masks atol 2e-3, binary agreement >= 99.9%`, async (t) => {
    const low = g('post.low_res_logits');
    const lowRes = { data: low.data as Float32Array, shape: [1, ...low.shape] };
    const before = tf.memory().numTensors;
    const [f] = await postProcessMasks(lowRes, [[1200, 1800]], [[683, 1024]], { binarize: false, impl });
    const [b] = await postProcessMasks(lowRes, [1200, 1800], [683, 1024], { impl });
    assert.equal(tf.memory().numTensors, before, 'tensor leak');
    assert.deepEqual(f!.shape, [1, 1, 1200, 1800]);
    assert.ok(b!.data instanceof Uint8Array);
    const d = maxAbs(stridedCHW(f!.data as Float32Array, 1, 1200, 1800, 4), g('post.masks_stride4').data);
    const bin = unpackBits(g('post.masks_binary_packbits').data, 1200 * 1800);
    let mism = 0;
    for (let i = 0; i < bin.length; i++) if (bin[i] !== b!.data[i]) mism++;
    const exact = sha(b!.data) === expected.sha256['post.masks_binary'];
    t.diagnostic(`${impl}: post.masks stride-4 max|d|=${d.max.toExponential(3)}; binary mismatches ${mism}/${bin.length}; binary exact=${exact}`);
    assert.ok(d.max <= 2e-3, `post.masks max abs ${d.max}`);
    assert.ok(1 - mism / bin.length >= 0.999, `binary agreement ${1 - mism / bin.length}`);
    if (impl === 'js') {
      assert.ok(d.max <= 1e-5, `js path should follow torch float32 closely (${d.max})`);
      assert.ok(exact, 'binary mask hash');
    }
  });
}

test('post_process_masks: tf tensor input, batch/multimask layout', async () => {
  const low = g('post.low_res_logits').data as Float32Array;
  // [B=2, pb=1, k=2, 256, 256]: masks (a, -a) and (a, a)
  const buf = new Float32Array(4 * 256 * 256);
  buf.set(low, 0);
  buf.set(low.map((v) => -v), 256 * 256);
  buf.set(low, 2 * 256 * 256);
  buf.set(low, 3 * 256 * 256);
  const x = tf.tensor(buf, [2, 1, 2, 256, 256]);
  const before = tf.memory().numTensors;
  const out = await postProcessMasks(x, [[120, 180], [60, 60]], [[683, 1024], [1024, 1024]], { binarize: true });
  assert.equal(tf.memory().numTensors, before);
  x.dispose();
  assert.deepEqual(out[0]!.shape, [1, 2, 120, 180]);
  assert.deepEqual(out[1]!.shape, [1, 2, 60, 60]);
  const plane = 120 * 180;
  for (let i = 0; i < plane; i++) assert.ok(out[0]!.data[i]! + out[0]!.data[plane + i]! <= 1);
});

// ---------------------------------------------------------------------------------------------------------------
// decoding of other formats

/** Minimal little-endian, uncompressed, single-strip TIFF writer (sharp cannot write 16-bit/float TIFF). */
function tiff(w: number, h: number, spp: number, bits: 8 | 16 | 32, sampleFormat: 1 | 3, data: ArrayBufferView): Buffer {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const entries: Array<[number, number, number, number[]]> = [
    [256, 4, 1, [w]], [257, 4, 1, [h]], [258, 3, spp, Array(spp).fill(bits)], [259, 3, 1, [1]], [262, 3, 1, [spp >= 3 ? 2 : 1]],
    [273, 4, 1, [0]], [277, 3, 1, [spp]], [278, 4, 1, [h]], [279, 4, 1, [bytes.length]], [284, 3, 1, [1]], [339, 3, spp, Array(spp).fill(sampleFormat)],
  ];
  if (spp === 2 || spp === 4) entries.push([338, 3, 1, [2]]);
  entries.sort((a, b) => a[0] - b[0]);
  const ifd = Buffer.alloc(2 + entries.length * 12 + 4);
  ifd.writeUInt16LE(entries.length, 0);
  let next = 8 + ifd.length;
  const extras: Buffer[] = [];
  entries.forEach(([tag, type, count, vals], i) => {
    const o = 2 + i * 12;
    ifd.writeUInt16LE(tag, o);
    ifd.writeUInt16LE(type, o + 2);
    ifd.writeUInt32LE(count, o + 4);
    const size = (type === 3 ? 2 : 4) * count;
    const buf = Buffer.alloc(Math.max(size, 4));
    vals.forEach((v, j) => (type === 3 ? buf.writeUInt16LE(v, j * 2) : buf.writeUInt32LE(v, j * 4)));
    if (size <= 4) buf.copy(ifd, o + 8, 0, 4);
    else {
      ifd.writeUInt32LE(next, o + 8);
      extras.push(buf);
      next += buf.length;
    }
  });
  ifd.writeUInt32LE(next, 2 + entries.findIndex((e) => e[0] === 273) * 12 + 8);
  const head = Buffer.from([0x49, 0x49, 42, 0, 8, 0, 0, 0]);
  return Buffer.concat([head, ifd, ...extras, bytes]);
}

test('decode: 16-bit grayscale PNG (min-max default, clip = PIL, shift, window)', async () => {
  const W = 6, H = 4;
  const v = new Uint16Array(W * H).map((_, i) => 1000 + i * 200); // 1000..5600
  const f = join(tmp, 'g16.png');
  await sharp(v, { raw: { width: W, height: H, channels: 1 } }).toColourspace('grey16').png().toFile(f);
  const auto = await readImageRGB(f);
  assert.equal(auto.info.depth, 'ushort');
  assert.equal(auto.info.bitDepthRule, 'minmax');
  assert.deepEqual(auto.info.window, [1000, 5600]);
  assert.equal(auto.data[0], 0);
  assert.equal(auto.data[(W * H - 1) * 3], 255);
  assert.equal(auto.data[3 * 5], Math.round((1000 * 255) / 4600));
  assert.equal(auto.data[3 * 5 + 1], auto.data[3 * 5]); // gray replicated
  assert.ok((await readImageRGB(f, { highBitDepth: 'clip' })).data.every((x) => x === 255)); // what PIL convert('RGB') does
  const sh = await readImageRGB(f, { highBitDepth: 'shift' });
  assert.equal(sh.data[3 * 7], (1000 + 7 * 200) >> 8);
  const win = await readImageRGB(f, { highBitDepth: { window: [2000, 3000] } });
  assert.equal(win.data[0], 0);
  assert.equal(win.data[3 * 5], 0); // 2000
  assert.equal(win.data[3 * 10], 255); // 3000
  assert.equal(win.data[3 * 8], Math.round((600 * 255) / 1000)); // 2600
});

test('decode: 16-bit RGB PNG keeps the high byte (like PIL)', async () => {
  const W = 4, H = 3;
  const v = new Uint16Array(W * H * 3).map((_, i) => i * 5000 + 77);
  const f = join(tmp, 'rgb16.png');
  await sharp(v, { raw: { width: W, height: H, channels: 3 } }).toColourspace('rgb16').png().toFile(f);
  const img = await readImageRGB(f);
  assert.equal(img.info.bitDepthRule, 'shift');
  assert.deepEqual(Array.from(img.data), Array.from(v, (x) => x >> 8));
});

test('decode: grayscale, gray+alpha, RGBA (alpha dropped, not composited), palette PNG', async () => {
  const W = 5, H = 3;
  const g8 = new Uint8Array(W * H).map((_, i) => i * 10);
  await sharp(g8, { raw: { width: W, height: H, channels: 1 } }).toColourspace('b-w').png().toFile(join(tmp, 'g8.png'));
  const a = await readImageRGB(join(tmp, 'g8.png'));
  assert.equal(a.info.channels, 1);
  assert.deepEqual(Array.from(a.data), Array.from(g8).flatMap((x) => [x, x, x]));

  const ga = new Uint8Array(W * H * 2).map((_, i) => (i % 2 ? 7 : i * 10));
  await sharp(ga, { raw: { width: W, height: H, channels: 2 } }).toColourspace('b-w').png().toFile(join(tmp, 'ga.png'));
  const b = await readImageRGB(join(tmp, 'ga.png'));
  assert.deepEqual([b.info.channels, b.info.hasAlpha], [2, true]);
  assert.deepEqual(Array.from(b.data), Array.from({ length: W * H }, (_, i) => [(i * 20) & 255, (i * 20) & 255, (i * 20) & 255]).flat());

  const rgba = new Uint8Array(W * H * 4).map((_, i) => (i % 4 === 3 ? 0 : (i * 37) & 255));
  await sharp(rgba, { raw: { width: W, height: H, channels: 4 } }).png().toFile(join(tmp, 'rgba.png'));
  const c = await readImageRGB(join(tmp, 'rgba.png'));
  assert.deepEqual([c.info.channels, c.info.hasAlpha], [4, true]);
  assert.deepEqual(Array.from(c.data), Array.from({ length: W * H }, (_, i) => [rgba[4 * i]!, rgba[4 * i + 1]!, rgba[4 * i + 2]!]).flat());

  const pal = new Uint8Array(W * H * 3);
  for (let i = 0; i < W * H; i++) pal.set([[255, 0, 0], [0, 128, 255], [10, 20, 30]][i % 3]!, i * 3);
  await sharp(pal, { raw: { width: W, height: H, channels: 3 } }).png({ palette: true, colours: 4, dither: 0 }).toFile(join(tmp, 'pal.png'));
  const d = await readImageRGB(join(tmp, 'pal.png'));
  assert.equal(d.info.isPalette, true);
  assert.deepEqual(d.data, pal);
});

test('decode: TIFF 8-bit RGB, 16-bit gray (+alpha), float32', async () => {
  const W = 7, H = 5;
  const rgb = new Uint8Array(W * H * 3).map((_, i) => (i * 53) & 255);
  await sharp(rgb, { raw: { width: W, height: H, channels: 3 } }).tiff({ compression: 'lzw' }).toFile(join(tmp, 'rgb8.tif'));
  const a = await readImageRGB(join(tmp, 'rgb8.tif'));
  assert.equal(a.info.format, 'tiff');
  assert.deepEqual(a.data, rgb);

  const g16 = new Uint16Array(W * H).map((_, i) => 300 + i * 100);
  await writeFile(join(tmp, 'g16.tif'), tiff(W, H, 1, 16, 1, g16));
  const b = await readImageRGB(join(tmp, 'g16.tif'));
  assert.equal(b.info.depth, 'ushort');
  assert.deepEqual(b.info.window, [300, 300 + (W * H - 1) * 100]);
  assert.equal(b.data[0], 0);
  assert.equal(b.data[(W * H - 1) * 3 + 2], 255);

  const ga16 = new Uint16Array(W * H * 2).map((_, i) => (i % 2 ? 65535 : 300 + (i / 2) * 100));
  await writeFile(join(tmp, 'ga16.tif'), tiff(W, H, 2, 16, 1, ga16));
  const c = await readImageRGB(join(tmp, 'ga16.tif'));
  assert.equal(c.info.hasAlpha, true);
  assert.deepEqual(c.data, b.data); // alpha excluded from the window and dropped

  const f32 = new Float32Array(W * H).map((_, i) => -1 + i * 0.5);
  await writeFile(join(tmp, 'f32.tif'), tiff(W, H, 1, 32, 3, f32));
  const d = await readImageRGB(join(tmp, 'f32.tif'));
  assert.equal(d.info.depth, 'float');
  assert.deepEqual(d.info.window, [-1, -1 + (W * H - 1) * 0.5]);
  assert.equal(d.data[3 * 17], Math.round((17 * 0.5 * 255) / ((W * H - 1) * 0.5)));
});

test('decode: EXIF orientation is reported, not applied (like PIL)', async () => {
  const W = 8, H = 4;
  const rgb = new Uint8Array(W * H * 3).fill(90);
  const f = join(tmp, 'rot.jpg');
  await sharp(rgb, { raw: { width: W, height: H, channels: 3 } }).jpeg().withMetadata({ orientation: 6 }).toFile(f);
  const img = await readImageRGB(f);
  assert.equal(img.info.orientation, 6);
  assert.deepEqual([img.width, img.height], [W, H]);
});

test('decode: corrupt, truncated, missing and unsupported files give clear errors', async () => {
  const bad = join(tmp, 'bad.png');
  await writeFile(bad, 'definitely not an image');
  await assert.rejects(readImageRGB(bad), (e: Error) => e.message.includes(bad) && /supported formats: PNG, JPEG, TIFF/.test(e.message));
  const trunc = join(tmp, 'trunc.jpg');
  await writeFile(trunc, (await readFile(join(FIX, 'truck.jpg'))).subarray(0, 40000));
  await assert.rejects(readImageRGB(trunc), (e: Error) => e.message.includes(trunc) && /supported formats/.test(e.message));
  await assert.rejects(readImageRGB(join(tmp, 'missing.png')), /missing\.png.*supported formats/);
  const webp = join(tmp, 'x.webp');
  await sharp({ create: { width: 4, height: 4, channels: 3, background: '#808080' } }).webp().toFile(webp);
  await assert.rejects(readImageRGB(webp), /format "webp" is not supported/);
  await assert.rejects(new SamProcessor().preprocess(bad), /bad\.png/);
});

// ---------------------------------------------------------------------------------------------------------------
// config + writing

test('SamProcessor config: folder file, defaults, validation', async () => {
  const p = await SamProcessor.fromFolder(FIX);
  assert.equal(p.longestEdge, 1024);
  assert.deepEqual(p.config.image_std, [0.229, 0.224, 0.225]);
  const d = await SamProcessor.fromFolder(tmp);
  assert.equal(d.configSource, 'defaults');
  assert.equal(d.config.rescale_factor, 1 / 255);
  const small = new SamProcessor({ size: { longest_edge: 64 }, pad_size: { height: 64, width: 64 } });
  const pre = small.preprocessRGB({ data: new Uint8Array(100 * 50 * 3), width: 100, height: 50 });
  assert.deepEqual(pre.shape, [1, 3, 64, 64]);
  assert.deepEqual(pre.reshapedInputSize, [32, 64]);
  assert.throws(() => new SamProcessor({ resample: 3 }), /resample=3/);
  assert.throws(() => new SamProcessor({ image_mean: [1, 2] }), /image_mean/);
});

test('writeMaskPng / writeOverlayPng', async () => {
  const W = 40, H = 30;
  const mask = new Uint8Array(W * H);
  for (let y = 10; y < 20; y++) for (let x = 5; x < 25; x++) mask[y * W + x] = 1;
  const mf = join(tmp, 'mask.png');
  await writeMaskPng(mf, mask, W, H);
  const meta = await sharp(mf).metadata();
  assert.deepEqual([meta.width, meta.height, meta.channels, meta.depth], [W, H, 1, 'uchar']);
  const m = await sharp(mf).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
  assert.equal(m.info.channels, 1);
  assert.equal(m.data[15 * W + 10], 255);
  assert.equal(m.data[0], 0);
  // float logits are thresholded at 0
  const logits = Float32Array.from(mask, (v) => (v ? 3 : -3));
  await writeMaskPng(join(tmp, 'mask2.png'), logits, W, H);
  assert.deepEqual(await sharp(join(tmp, 'mask2.png')).toColourspace('b-w').raw().toBuffer(), m.data);

  const img = { data: new Uint8Array(W * H * 3).fill(100), width: W, height: H };
  const ov = overlayMask(img, mask, { color: [255, 0, 0], alpha: 0.5, outlineColor: [0, 255, 0], outlineWidth: 1 });
  const px = (x: number, y: number) => Array.from(ov.subarray((y * W + x) * 3, (y * W + x) * 3 + 3));
  assert.deepEqual(px(0, 0), [100, 100, 100]); // outside
  assert.deepEqual(px(12, 15), [178, 50, 50]); // inside: blended
  assert.deepEqual(px(5, 15), [0, 255, 0]); // left edge: outline
  assert.deepEqual(px(12, 19), [0, 255, 0]); // bottom edge: outline
  const of = join(tmp, 'overlay.png');
  await writeOverlayPng(of, img, mask);
  const o = await sharp(of).metadata();
  assert.deepEqual([o.width, o.height, o.channels], [W, H, 3]);
  assert.throws(() => overlayMask(img, new Uint8Array(5)), /5 values/);
});

// ---------------------------------------------------------------------------------------------------------------
// processorParity plumbing (the real comparison runs on sam-reference/processor via `fedsam verify-reference`)

test('processorParity: reads a fixture folder in the manifest format and flags a wrong golden', async () => {
  const dir = await mkdtemp(join(tmp, 'parity-'));
  const W = 90, H = 60;
  const rgb = new Uint8Array(W * H * 3).map((_, i) => (i * 7 + (i >> 5)) & 255);
  await sharp(rgb, { raw: { width: W, height: H, channels: 3 } }).png().toFile(join(dir, 'img.png'));
  await writeFile(join(dir, 'preprocessor_config.json'), await readFile(join(FIX, 'preprocessor_config.json')));
  const [h, w] = getPreprocessShape([H, W]);
  const resized = resizeBilinearPillow(rgb, W, H, 3, w, h);
  const pv = pixelValuesFromResized({ data: resized, width: w, height: h }).data;
  const low = Float32Array.from({ length: 64 * 64 }, (_, i) => Math.sin(i / 37) * 3);
  const [masks] = await postProcessMasks({ data: low, shape: [1, 1, 1, 64, 64] }, [H, W], [h, w], { binarize: false });
  const bin = Uint8Array.from(masks!.data as Float32Array, (v) => (v > 0 ? 1 : 0));
  const box = rescaleBoxes([[10, 20, 50, 40]], [H, W], [h, w]);
  const tensors = new Map<string, HostTensor>([
    ['img.decoded_rgb_uint8', { dtype: 'uint8', shape: [H, W, 3], data: rgb }],
    ['img.resized_rgb_uint8', { dtype: 'uint8', shape: [h, w, 3], data: resized }],
    ['img.pixel_values', { dtype: 'float32', shape: [1, 3, 1024, 1024], data: pv }],
    ['post.low_res_logits', { dtype: 'float32', shape: [1, 1, 64, 64], data: low }],
    ['post.masks', { dtype: 'float32', shape: [1, 1, H, W], data: masks!.data as Float32Array }],
    ['post.masks_binary', { dtype: 'uint8', shape: [1, 1, H, W], data: bin }],
  ]);
  const m = {
    kind: 'sam_processor',
    files: { preprocessor_config: 'preprocessor_config.json', tensors: 'processor.safetensors' },
    images: [{ file: 'img.png', original_size: [H, W], reshaped_input_size: [h, w], pixel_values: 'img.pixel_values' }],
    prompts: [{ image: 'img.png', name: 'box', raw: { boxes: [[10, 20, 50, 40]] }, outputs: { input_boxes: { exact_values: [box], shape: [1, 1, 4] } } }],
    post_process_masks: { image: 'img.png', input: 'post.low_res_logits', output_float: 'post.masks', output_binary: 'post.masks_binary', original_sizes: [[H, W]], reshaped_input_sizes: [[h, w]] },
  };
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(m));
  await writeSafetensors(join(dir, 'processor.safetensors'), tensors);
  const rows = await processorParity(dir, { includeTf: false });
  assert.ok(rows.length >= 9, `${rows.length} rows`);
  for (const r of rows) assert.ok(r.pass, `${r.tensor}: ${JSON.stringify(r)}`);
  assert.deepEqual([...new Set(rows.map((r) => r.stage))].sort(), ['decode', 'normalize', 'postprocess', 'prompts', 'resize', 'sizes']);
  // one wrong resized pixel: the resize rows fail, the decode row still passes
  resized[100] = (resized[100]! + 3) & 255;
  await writeSafetensors(join(dir, 'processor.safetensors'), tensors);
  const rows2 = await processorParity(dir, { includeTf: false });
  const failed = rows2.filter((r) => !r.pass).map((r) => r.tensor);
  assert.ok(failed.includes('img.resized_rgb_uint8'), failed.join(', '));
  assert.ok(rows2.find((r) => r.stage === 'decode')!.pass);
});
