import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync, gzipSync } from 'node:zlib';
import sharp from 'sharp';
import {
  DatasetError, Rng, boxPrompt, dice, filledBox, iou, labelStats, loadDataset, readNifti,
  samplePoints, splitByGroup, writePng, type Box,
} from '../client/src/data/index.ts';
import { encodeNifti1 } from './helpers/nifti.ts';
import { intensityRule } from '../client/src/data/nifti.ts';
import { boxJitterFromWire, boxJitterToWire, parseBoxJitter } from '@fedsam/shared/train/boxJitter';

const W = 24, H = 16;

async function tmp(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'fedsam-data-'));
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

/** Label image with rectangles [x0,y0,x1,y1] (inclusive) painted with value. */
function rects(w: number, h: number, rs: [number, Box][]): Uint8Array {
  const m = new Uint8Array(w * h);
  for (const [v, [x0, y0, x1, y1]] of rs) for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) m[y * w + x] = v;
  return m;
}

function gradient(w: number, h: number): Uint8Array {
  const g = new Uint8Array(w * h);
  for (let i = 0; i < g.length; i++) g[i] = (i * 7) % 256;
  return g;
}

// 16-bit grayscale PNG built by hand (sharp cannot write 16-bit from raw input).
function crc32(buf: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of buf) {
    let c = (crc ^ b) & 0xff;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crc = (crc >>> 8) ^ c;
  }
  return (crc ^ 0xffffffff) >>> 0;
}
function png16(w: number, h: number, vals: ArrayLike<number>): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 16;
  const raw = Buffer.alloc(h * (1 + 2 * w));
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) raw.writeUInt16BE(vals[y * w + x]!, y * (1 + 2 * w) + 1 + 2 * x);
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

test('metrics: dice / iou, empty masks count as perfect', () => {
  assert.equal(dice(new Uint8Array(4), new Uint8Array(4)), 1);
  assert.equal(iou(new Uint8Array(4), new Uint8Array(4)), 1);
  assert.equal(dice(Uint8Array.of(1, 1, 0, 0), Uint8Array.of(1, 0, 0, 0)), 2 / 3);
  assert.equal(iou(Uint8Array.of(1, 1, 0, 0), Uint8Array.of(0, 1, 1, 0)), 1 / 3);
  assert.equal(dice(Uint8Array.of(1, 0), Uint8Array.of(0, 1)), 0);
  assert.throws(() => dice(new Uint8Array(2), new Uint8Array(3)));
});

test('folder layout: binary + label-indexed + 16-bit masks, boxes, images, image keys', async (t) => {
  const d = await tmp(t);
  // a: RGB image, binary 0/255 mask
  const rgb = new Uint8Array(W * H * 3).map((_, i) => (i * 13) % 256);
  await writePng(join(d, 'images/a.png'), rgb, W, H, 3);
  await writePng(join(d, 'masks/a.png'), rects(W, H, [[255, [2, 3, 5, 7]]]), W, H);
  // b: gray JPEG image, label-indexed mask with two touching objects and a third one
  await sharp(Buffer.from(gradient(W, H)), { raw: { width: W, height: H, channels: 1 } }).jpeg().toFile(join(d, 'images/b.jpg'));
  await writePng(join(d, 'masks/b.png'), rects(W, H, [[1, [0, 0, 3, 3]], [2, [4, 0, 9, 2]], [5, [20, 10, 23, 15]]]), W, H);
  // c: TIFF image, 16-bit label mask with small labels (sharp would reduce these to 0 without care), suffix name
  await sharp(Buffer.from(gradient(W, H)), { raw: { width: W, height: H, channels: 1 } }).toColourspace('b-w').tiff({ compression: 'lzw' }).toFile(join(d, 'images/c.tif'));
  await writeFile(join(d, 'masks/c_mask.png'), png16(W, H, rects(W, H, [[1, [1, 1, 1, 1]], [3, [10, 5, 12, 9]]])));

  const { samples, report } = await loadDataset(d);
  assert.equal(report.format, 'folder');
  assert.deepEqual(report.skipped, []);
  assert.deepEqual(samples.map((s) => s.id), ['a:255', 'b:1', 'b:2', 'b:5', 'c:1', 'c:3']);
  assert.equal(report.samples, 6);
  assert.equal(report.images, 3);
  assert.equal(report.groups, 3);
  const by = new Map(samples.map((s) => [s.id, s]));
  assert.deepEqual(by.get('a:255')!.box, [2, 3, 5, 7]);
  assert.deepEqual(by.get('b:2')!.box, [4, 0, 9, 2]);
  assert.deepEqual(by.get('b:5')!.box, [20, 10, 23, 15]);
  assert.deepEqual(by.get('c:3')!.box, [10, 5, 12, 9]);
  assert.equal(by.get('c:1')!.area, 1);
  assert.equal(by.get('b:1')!.group, 'b');
  // shared identity for samples of one image, distinct across images
  assert.match(by.get('b:1')!.imageKey, /^sha256:[0-9a-f]{64}$/);
  assert.equal(by.get('b:1')!.imageKey, by.get('b:2')!.imageKey);
  assert.notEqual(by.get('a:255')!.imageKey, by.get('b:1')!.imageKey);

  const a = by.get('a:255')!;
  const img = await a.loadImage();
  assert.equal(img.width, W);
  assert.equal(img.height, H);
  assert.deepEqual(img.data, rgb);
  const gray = await by.get('b:1')!.loadImage(); // JPEG gray -> RGB replicated
  assert.equal(gray.data.length, W * H * 3);
  assert.equal(gray.data[3 * 40], gray.data[3 * 40 + 1]);
  const tif = await by.get('c:1')!.loadImage();
  assert.deepEqual(tif.data.filter((_, i) => i % 3 === 0), gradient(W, H));

  for (const s of samples) {
    const m = await s.loadMask();
    assert.equal(m.length, W * H);
    assert.ok(m.every((v) => v === 0 || v === 1));
    assert.equal(m.reduce((x, y) => x + y, 0), s.area);
    assert.deepEqual(labelStats(m, W, H)[0]!.box, s.box);
  }
  // touching labels stay separate objects
  const m1 = await by.get('b:1')!.loadMask(), m2 = await by.get('b:2')!.loadMask();
  assert.equal(iou(m1, m2), 0);

  // groupPattern and label filter
  const g = await loadDataset(d, { groupPattern: /^(.)/, labels: [1] });
  assert.deepEqual(g.samples.map((s) => s.id), ['b:1', 'c:1']);
  assert.ok(g.report.skipped.some((s) => s.file.endsWith('a.png') && /requested labels/.test(s.reason)));
});

test('folder layout: bad inputs are reported by file and counted, nothing dropped silently', async (t) => {
  const d = await tmp(t);
  await writePng(join(d, 'images/good.png'), gradient(W, H), W, H);
  await writePng(join(d, 'masks/good.png'), rects(W, H, [[1, [1, 1, 4, 4]]]), W, H);
  await writeFile(join(d, 'images/garbage.png'), 'not a png');
  await writePng(join(d, 'masks/garbage.png'), rects(W, H, [[1, [1, 1, 4, 4]]]), W, H);
  await writePng(join(d, 'images/small.png'), gradient(W, H), W, H);
  await writePng(join(d, 'masks/small.png'), rects(W, H - 2, [[1, [1, 1, 4, 4]]]), W, H - 2);
  await writePng(join(d, 'images/empty.png'), gradient(W, H), W, H);
  await writePng(join(d, 'masks/empty.png'), new Uint8Array(W * H), W, H);
  await writePng(join(d, 'images/lonely.png'), gradient(W, H), W, H);
  await writePng(join(d, 'masks/orphan.png'), rects(W, H, [[1, [1, 1, 4, 4]]]), W, H);
  await writeFile(join(d, 'masks/broken.png'), 'broken');
  await writePng(join(d, 'images/broken.png'), gradient(W, H), W, H);
  await writeFile(join(d, 'images/notes.txt'), 'hello');
  // truncated PNG (valid header, cut data)
  const full = await sharp(Buffer.from(gradient(64, 64)), { raw: { width: 64, height: 64, channels: 1 } }).png({ compressionLevel: 0 }).toBuffer();
  await writeFile(join(d, 'images/trunc.png'), full.subarray(0, full.length / 2));
  await writePng(join(d, 'masks/trunc.png'), rects(64, 64, [[1, [1, 1, 4, 4]]]), 64, 64);

  const { samples, report } = await loadDataset(d);
  assert.deepEqual(samples.map((s) => s.id), ['good:1']);
  const reason = (f: string): string => report.skipped.find((s) => s.file === join(d, f))?.reason ?? 'NOT REPORTED';
  assert.match(reason('images/garbage.png'), /unreadable image/);
  assert.match(reason('images/trunc.png'), /unreadable image/);
  assert.match(reason('masks/broken.png'), /unreadable mask/);
  assert.match(reason('masks/small.png'), /mask size 24x14 differs from image .*small\.png 24x16/);
  assert.match(reason('masks/empty.png'), /no objects/);
  assert.match(reason('images/lonely.png'), /no mask/);
  assert.match(reason('masks/orphan.png'), /no image/);
  assert.equal(report.skipped.length, 7);
  assert.ok(report.notes.some((n) => /1 entry .* ignored/.test(n)), report.notes.join('\n'));

  // minArea drops small objects with a report entry
  const r2 = await loadDataset(d, { minArea: 100 }).catch((e: Error) => e);
  assert.ok(r2 instanceof DatasetError);
  assert.match(r2.message, /no samples/);
  assert.match(r2.message, /minArea 100/);
});

test('empty / unknown dataset -> error saying what was looked for', async (t) => {
  const d = await tmp(t);
  await assert.rejects(loadDataset(d), (e: Error) => e instanceof DatasetError && /looked for images\/ \+ masks\//.test(e.message) && /imagesTr/.test(e.message));
  await assert.rejects(loadDataset(join(d, 'missing')), /does not exist/);
  await mkdir(join(d, 'images'));
  await mkdir(join(d, 'masks'));
  await assert.rejects(loadDataset(d), /no samples .*folder layout/);
});

test('manifest CSV and JSONL: relative paths, box, group, label, bad rows', async (t) => {
  const d = await tmp(t);
  await writePng(join(d, 'data/p1_a.png'), gradient(W, H), W, H);
  await writePng(join(d, 'data/p1_a_m.png'), rects(W, H, [[1, [0, 0, 3, 3]], [2, [8, 8, 12, 12]]]), W, H);
  await writePng(join(d, 'data/p2_b.png'), gradient(W, H).reverse(), W, H);
  await writePng(join(d, 'data/p2_b_m.png'), rects(W, H, [[7, [5, 5, 6, 6]]]), W, H);
  await writeFile(join(d, 'train.csv'), [
    'Image,Mask,Box,Patient',
    'data/p1_a.png,data/p1_a_m.png,,P1',
    'data/p2_b.png,data/p2_b_m.png,"4,4,8,8",P2',
    'data/p2_b.png,,,P2',
    'data/missing.png,data/p2_b_m.png,,P3',
  ].join('\n'));
  const csv = await loadDataset(join(d, 'train.csv'));
  assert.equal(csv.report.format, 'manifest');
  assert.deepEqual(csv.samples.map((s) => [s.id, s.group, s.box]), [
    ['data/p1_a:1', 'P1', [0, 0, 3, 3]],
    ['data/p1_a:2', 'P1', [8, 8, 12, 12]],
    ['data/p2_b:1', 'P2', [4, 4, 8, 8]], // given box; mask read as binary
  ]);
  assert.equal(csv.report.skipped.length, 2);
  assert.ok(csv.report.skipped.some((s) => /row 3: missing mask/.test(s.reason)));
  assert.ok(csv.report.skipped.some((s) => s.file.endsWith('missing.png') && /unreadable image .*row 4/.test(s.reason)));

  await writeFile(join(d, 'm.jsonl'), [
    JSON.stringify({ image: 'data/p1_a.png', mask: 'data/p1_a_m.png', label: 2 }),
    '{ not json',
    JSON.stringify({ image: 'data/p2_b.png', mask: 'data/p2_b_m.png', box: [1, 2, 3, 4], group: 'P2' }),
    JSON.stringify({ image: 'data/p2_b.png', mask: 'data/p2_b_m.png', box: [1, 2, 300, 4] }),
    '',
  ].join('\n'));
  const jl = await loadDataset(join(d, 'm.jsonl'));
  assert.deepEqual(jl.samples.map((s) => [s.id, s.group, s.box, s.label]), [
    ['data/p1_a:2', 'p1_a', [8, 8, 12, 12], 2],
    ['data/p2_b:1', 'P2', [1, 2, 3, 4], 1],
  ]);
  assert.deepEqual((await jl.samples[0]!.loadMask()).reduce((a, b) => a + b, 0), 25);
  assert.equal(jl.report.skipped.length, 2);
  assert.ok(jl.report.skipped.some((s) => /line 2: invalid JSON/.test(s.reason)));
  assert.ok(jl.report.skipped.some((s) => /outside the 24x16 image/.test(s.reason)));

  // a folder holding manifest.csv is detected too
  await writeFile(join(d, 'manifest.csv'), 'image,mask\ndata/p1_a.png,data/p1_a_m.png\n');
  assert.equal((await loadDataset(d)).samples.length, 2);
  await writeFile(join(d, 'bad.csv'), 'foo,bar\n1,2\n');
  await assert.rejects(loadDataset(join(d, 'bad.csv')), /needs an "image" and a "mask" column/);
});

// ---- NIfTI ----
const NX = 6, NY = 5, NZ = 4;

function ctVolume(): Int16Array {
  // raw values; physical = raw * 2 - 1000 (scl_slope 2, scl_inter -1000); value depends on (i, j, k)
  const v = new Int16Array(NX * NY * NZ);
  for (let k = 0; k < NZ; k++) for (let j = 0; j < NY; j++) for (let i = 0; i < NX; i++) v[i + NX * (j + NY * k)] = 400 + 50 * i + 10 * j + k;
  return v;
}

function labelVolume(): Uint8Array {
  const v = new Uint8Array(NX * NY * NZ);
  const set = (i: number, j: number, k: number, l: number): void => { v[i + NX * (j + NY * k)] = l; };
  // slice k=1: label 1 at (i 1..2, j 0..3); slice k=2: label 1 at (4,4) and label 2 at (0..1, 1); k=0,3 empty
  for (let j = 0; j <= 3; j++) for (let i = 1; i <= 2; i++) set(i, j, 1, 1);
  set(4, 4, 2, 1);
  set(0, 1, 2, 2);
  set(1, 1, 2, 2);
  return v;
}

async function writeNii(path: string, o: Parameters<typeof encodeNifti1>[0]): Promise<void> {
  const bytes = encodeNifti1(o);
  await writeFile(path, path.endsWith('.gz') ? gzipSync(bytes) : bytes);
}

test('NIfTI imagesTr/labelsTr: slices with objects, boxes, orientation, window vs percentile, keys', async (t) => {
  const d = await tmp(t);
  await mkdir(join(d, 'imagesTr'));
  await mkdir(join(d, 'labelsTr'));
  const pixdim = [0.8, 0.8, 2.5];
  await writeNii(join(d, 'imagesTr/case_01_0000.nii.gz'), { dims: [NX, NY, NZ], data: ctVolume(), datatype: 'int16', pixdim, sclSlope: 2, sclInter: -1000 });
  await writeNii(join(d, 'imagesTr/case_01_0001.nii.gz'), { dims: [NX, NY, NZ], data: ctVolume(), datatype: 'int16', pixdim });
  await writeNii(join(d, 'labelsTr/case_01.nii.gz'), { dims: [NX, NY, NZ], data: labelVolume(), pixdim });

  const vol = await readNifti(join(d, 'imagesTr/case_01_0000.nii.gz'));
  assert.deepEqual(vol.dims, [NX, NY, NZ]);
  assert.equal(vol.slope, 2);

  const { samples, report } = await loadDataset(d, { window: '100,400' }); // physical -200..-0 ... window -100..300
  assert.equal(report.format, 'nifti');
  assert.deepEqual(report.skipped, []);
  assert.ok(report.notes.some((n) => /other channels/.test(n)));
  assert.deepEqual(samples.map((s) => s.id), ['case_01:a2:s1:1', 'case_01:a2:s2:1', 'case_01:a2:s2:2']);
  assert.ok(samples.every((s) => s.group === 'case_01' && s.width === NX && s.height === NY));
  assert.deepEqual(samples.map((s) => s.box), [[1, 0, 2, 3], [4, 4, 4, 4], [0, 1, 1, 1]]);
  assert.match(samples[0]!.imageKey, /^sha256:[0-9a-f]{64}:a2:s1:w100,400$/);
  assert.equal(samples[1]!.imageKey, samples[2]!.imageKey);
  assert.deepEqual(samples[0]!.source, { kind: 'slice', path: join(d, 'imagesTr/case_01_0000.nii.gz'), axis: 2, index: 1 });

  // pixel (row j, col i) of slice k: physical = 2 * (400 + 50 i + 10 j + k) - 1000, window [-100, 300]
  const img = await samples[0]!.loadImage();
  assert.equal(img.data.length, NX * NY * 3);
  for (const [i, j] of [[0, 0], [3, 2], [5, 4]] as const) {
    const phys = 2 * (400 + 50 * i + 10 * j + 1) - 1000;
    const want = Math.round(Math.min(255, Math.max(0, ((phys + 100) / 400) * 255)));
    assert.equal(img.data[(j * NX + i) * 3], want, `pixel ${i},${j}`);
  }
  const m = await samples[0]!.loadMask();
  assert.equal(m.reduce((a, b) => a + b, 0), 8);
  assert.equal(m[0 * NX + 1], 1);
  assert.equal(m[3 * NX + 2], 1);
  assert.equal(m[4 * NX + 1], 0);

  // percentile rule (no window): 0.5..99.5 percentiles of the non-zero physical voxels -> different image, key
  const p = await loadDataset(d);
  assert.match(p.samples[0]!.imageKey, /:a2:s1:p0\.5-99\.5$/);
  const pimg = await p.samples[0]!.loadImage();
  assert.notDeepEqual(pimg.data, img.data);
  const phys = Float32Array.from(ctVolume(), (x) => 2 * x - 1000);
  const rule = intensityRule(phys);
  const sorted = [...phys].filter((x) => x !== 0).sort((a, b) => a - b);
  assert.ok(rule.lo > sorted[0]! && rule.lo < sorted[2]!, `lo ${rule.lo}`);
  assert.ok(rule.hi < sorted.at(-1)! && rule.hi > sorted.at(-3)!, `hi ${rule.hi}`);
  let lo = 255, hi = 0;
  for (let i = 0; i < pimg.data.length; i += 3) { lo = Math.min(lo, pimg.data[i]!); hi = Math.max(hi, pimg.data[i]!); }
  assert.ok(lo < 40 && hi > 215, `slice spans most of 0..255 (${lo}..${hi})`);

  // other axis: axis 0 -> slices i with width NY (j), height NZ (k)
  const a0 = await loadDataset(d, { axis: 0 });
  assert.deepEqual(a0.samples.map((s) => s.id), ['case_01:a0:s0:2', 'case_01:a0:s1:1', 'case_01:a0:s1:2', 'case_01:a0:s2:1', 'case_01:a0:s4:1']);
  assert.deepEqual(a0.samples[1]!.box, [0, 1, 3, 1]);
  assert.equal(a0.samples[1]!.width, NY);
  assert.equal(a0.samples[1]!.height, NZ);
});

test('NIfTI geometry mismatch and flat *_img / *_seg pairing', async (t) => {
  const d = await tmp(t);
  const pixdim = [0.8, 0.8, 2.5];
  await writeNii(join(d, 'p1_img.nii.gz'), { dims: [NX, NY, NZ], data: ctVolume(), datatype: 'int16', pixdim });
  await writeNii(join(d, 'p1_seg.nii.gz'), { dims: [NX, NY, NZ], data: labelVolume(), pixdim });
  // pixdim differs beyond tolerance
  await writeNii(join(d, 'p2_img.nii.gz'), { dims: [NX, NY, NZ], data: ctVolume(), datatype: 'int16', pixdim });
  await writeNii(join(d, 'p2_seg.nii.gz'), { dims: [NX, NY, NZ], data: labelVolume(), pixdim: [0.8, 0.8, 3] });
  // dims differ
  await writeNii(join(d, 'p3.nii'), { dims: [NX, NY, NZ], data: ctVolume(), datatype: 'int16', pixdim });
  await writeNii(join(d, 'p3_label.nii'), { dims: [NX, NY, NZ - 1], data: labelVolume().subarray(0, NX * NY * (NZ - 1)), pixdim });
  // affine (origin) differs; a tiny difference within tolerance is accepted
  const srow = (ox: number): number[][] => [[0.8, 0, 0, ox], [0, 0.8, 0, 0], [0, 0, 2.5, 0]];
  await writeNii(join(d, 'p4_img.nii.gz'), { dims: [NX, NY, NZ], data: ctVolume(), datatype: 'int16', pixdim, srow: srow(-100) });
  await writeNii(join(d, 'p4_seg.nii.gz'), { dims: [NX, NY, NZ], data: labelVolume(), pixdim, srow: srow(-90) });
  await writeNii(join(d, 'p5_img.nii.gz'), { dims: [NX, NY, NZ], data: ctVolume(), datatype: 'int16', pixdim, srow: srow(-100) });
  await writeNii(join(d, 'p5_seg.nii.gz'), { dims: [NX, NY, NZ], data: labelVolume(), pixdim, srow: srow(-100.00001) });
  // empty label, unreadable image, image without label
  await writeNii(join(d, 'p6_img.nii.gz'), { dims: [NX, NY, NZ], data: ctVolume(), datatype: 'int16', pixdim });
  await writeNii(join(d, 'p6_seg.nii.gz'), { dims: [NX, NY, NZ], data: new Uint8Array(NX * NY * NZ), pixdim });
  await writeFile(join(d, 'p7_img.nii.gz'), gzipSync(Buffer.from('definitely not nifti')));
  await writeNii(join(d, 'p7_seg.nii.gz'), { dims: [NX, NY, NZ], data: labelVolume(), pixdim });
  await writeNii(join(d, 'p8_img.nii.gz'), { dims: [NX, NY, NZ], data: ctVolume(), datatype: 'int16', pixdim });

  const { samples, report } = await loadDataset(d);
  assert.equal(report.format, 'nifti');
  assert.deepEqual([...new Set(samples.map((s) => s.group))], ['p1', 'p5']);
  const reason = (f: string): string => report.skipped.find((s) => s.file === join(d, f))?.reason ?? 'NOT REPORTED';
  assert.match(reason('p2_seg.nii.gz'), /label geometry differs from image .*p2_img\.nii\.gz: pixdim 0\.8,0\.8,3 vs image 0\.8,0\.8,2\.5/);
  assert.match(reason('p3_label.nii'), /geometry differs .*dims 6x5x3 vs image 6x5x4/);
  assert.match(reason('p4_seg.nii.gz'), /affine/);
  assert.match(reason('p6_seg.nii.gz'), /no objects/);
  assert.match(reason('p7_img.nii.gz'), /unreadable image volume: not a NIfTI/);
  assert.match(reason('p8_img.nii.gz'), /no label volume/);
  assert.equal(report.skipped.length, 6);
});

test('split: grouped, deterministic by seed', () => {
  const items = Array.from({ length: 200 }, (_, i) => ({ id: i, group: `g${i % 23}` }));
  const a = splitByGroup(items, { seed: 1, valFraction: 0.25 });
  const b = splitByGroup([...items].reverse(), { seed: 1, valFraction: 0.25 });
  assert.deepEqual(a.valGroups, b.valGroups);
  assert.equal(a.valGroups.length, 6);
  assert.equal(a.train.length + a.val.length, 200);
  const tg = new Set(a.train.map((s) => s.group));
  assert.ok(a.val.every((s) => !tg.has(s.group)));
  assert.deepEqual(splitByGroup(items, { seed: 1, valFraction: 0.25 }), a);
  const others = [2, 3, 4, 5].map((seed) => splitByGroup(items, { seed, valFraction: 0.25 }).valGroups.join());
  assert.ok(others.some((v) => v !== a.valGroups.join()));
  // tiny datasets: at least one group on each side
  const two = splitByGroup([{ group: 'x' }, { group: 'y' }], { valFraction: 0.1 });
  assert.equal(two.train.length, 1);
  assert.equal(two.val.length, 1);
  assert.equal(splitByGroup([{ group: 'x' }]).val.length, 0);
});

test('prompts: the recipe\'s box jitter 0..20 px per side, SAM\'s noise, both clamped to the image, none for validation; points', () => {
  const box: Box = [30, 40, 60, 70];
  const rng = new Rng(7);
  const seen = new Set<number>();
  for (let k = 0; k < 2000; k++) {
    const b = boxPrompt(box, 100, 80, rng, 20);
    const d = [box[0] - b[0], box[1] - b[1], b[2] - box[2], b[3] - box[3]];
    for (const x of d) {
      assert.ok(Number.isInteger(x) && x >= 0 && x <= 20, `jitter ${x}`);
      seen.add(x);
    }
    assert.ok(b[3] <= 80);
  }
  assert.ok(seen.has(0) && seen.has(20));
  const edge = boxPrompt([2, 3, 97, 77], 100, 80, new Rng(1), 20);
  assert.ok(edge[0] >= 0 && edge[1] >= 0 && edge[2] <= 100 && edge[3] <= 80);
  for (const j of [20, 'sam', 0] as const) {
    assert.deepEqual(boxPrompt(box, 100, 80, undefined, j), box, `validation: the tight box (${j})`);
    const r1 = new Rng(3), r2 = new Rng(3);
    assert.deepEqual([boxPrompt(box, 100, 80, r1, j), boxPrompt(box, 100, 80, r1, j)], [boxPrompt(box, 100, 80, r2, j), boxPrompt(box, 100, 80, r2, j)]);
  }
  assert.deepEqual(boxPrompt(box, 100, 80, new Rng(3), 0), box);
  // SAM's noise: each side moves either way by N(0, 10% of the side), at most 20 px per 1024 of the longest side
  // (a 30 px box in a 1024 px image: σ 3 px, well inside the 20 px cap; in a 100 px image the cap is 1.95 px)
  const big: Box = [300, 400, 330, 430];
  const moves: number[] = [];
  const r = new Rng(11);
  for (let k = 0; k < 4000; k++) {
    const b = boxPrompt(big, 1024, 1024, r, 'sam');
    moves.push(b[0] - big[0], b[1] - big[1], b[2] - big[2], b[3] - big[3]);
  }
  const mean = moves.reduce((a, b) => a + b, 0) / moves.length;
  const sd = Math.sqrt(moves.reduce((a, b) => a + (b - mean) ** 2, 0) / moves.length);
  assert.ok(Math.abs(mean) < 0.1, `SAM noise is centred (mean ${mean})`);
  assert.ok(Math.abs(sd - 3) < 0.1, `σ = 10% of the side (${sd})`);
  assert.ok(moves.some((m) => m < -6) && moves.some((m) => m > 6), 'inwards and outwards');
  const capped = Array.from({ length: 500 }, () => boxPrompt([10, 10, 90, 70], 100, 80, r, 'sam'));
  for (const b of capped) {
    for (const [d, c] of [[b[0] - 10, 0], [b[1] - 10, 1], [b[2] - 90, 2], [b[3] - 70, 3]] as const) assert.ok(Math.abs(d) <= (20 * 100) / 1024 + 1e-9, `side ${c} moved ${d}`);
    assert.ok(b[0] >= 0 && b[1] >= 0 && b[2] <= 100 && b[3] <= 80 && b[2] > b[0] && b[3] > b[1]);
  }
  assert.equal(parseBoxJitter('sam'), 'sam');
  assert.equal(parseBoxJitter('12'), 12);
  assert.equal(boxJitterFromWire(''), 20, 'an older server means the recipe');
  assert.equal(boxJitterFromWire(boxJitterToWire('sam')), 'sam');
  assert.equal(boxJitterFromWire(boxJitterToWire(7)), 7);
  for (const bad of ['-1', '1.5', 'SAM', '', 'x']) assert.throws(() => parseBoxJitter(bad), RangeError, bad);

  const m = rects(10, 10, [[1, [2, 2, 4, 4]]]);
  const p = samplePoints(m, 10, 10, new Rng(5), { positive: 5, negative: 5, box: [1, 1, 6, 6] });
  assert.equal(p.points.length, 10);
  p.points.forEach(([x, y], i) => {
    assert.equal(m[y * 10 + x], p.labels[i]);
    if (p.labels[i] === 0) assert.ok(x >= 1 && x <= 6 && y >= 1 && y <= 6);
  });
});

test('rng: reproducible, forks independent', () => {
  const a = new Rng(42), b = new Rng(42);
  assert.deepEqual(Array.from({ length: 5 }, () => a.uint32()), Array.from({ length: 5 }, () => b.uint32()));
  assert.notEqual(new Rng(1).next(), new Rng(2).next());
  assert.equal(new Rng(9).fork('x').next(), new Rng(9).fork('x').next());
  assert.notEqual(new Rng(9).fork('x').next(), new Rng(9).fork('y').next());
  const r = new Rng(0);
  for (let i = 0; i < 1000; i++) {
    const v = r.int(-3, 3);
    assert.ok(v >= -3 && v <= 3);
  }
  assert.deepEqual(filledBox([1, 1, 2, 1], 4, 3), Uint8Array.of(0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0));
});

