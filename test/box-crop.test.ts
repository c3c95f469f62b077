// Box crops (shared/src/boxCrop.ts): where the crop lies, that a cropped sample is the same object, and that
// `fedsam evaluate --box-crop` and `fedsam predict --box-crop` (two code paths: a cropped Sample through the engine,
// and predict's own crop and paste-back) give the same masks on real PNG files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { boxCropRect, parseBoxCrop, uncropMask, BOX_CROP_MAX_ZOOM } from '@fedsam/shared/boxCrop';
import { cropSample } from '../client/src/data/cropSample.ts';
import { loadDataset } from '../client/src/data/datasets.ts';
import { dice } from '../client/src/data/metrics.ts';
import { runFedsam as fedsam } from './helpers/fed-harness.ts';

const contains = (r: { x: number; y: number; width: number; height: number }, b: number[]) =>
  r.x <= b[0]! && r.y <= b[1]! && r.x + r.width - 1 >= b[2]! && r.y + r.height - 1 >= b[3]!;

test('boxCropRect: a square of context × the box side around the box, at least input/4, inside the image, always holding the box', () => {
  // centred, 2 × the longer side (20 px)
  assert.deepEqual(boxCropRect([100, 100, 119, 109], 256, 256, 64, 2), { x: 90, y: 85, width: 40, height: 40 });
  // small boxes: never more than BOX_CROP_MAX_ZOOM × magnification (side ≥ 256 / 4)
  const small = boxCropRect([50, 60, 53, 62], 256, 256, 256, 2);
  assert.equal(small.width, 256 / BOX_CROP_MAX_ZOOM);
  assert.ok(contains(small, [50, 60, 53, 62]));
  // at an edge the crop shifts instead of shrinking, and still holds the box
  assert.deepEqual(boxCropRect([0, 240, 9, 255], 256, 256, 256, 2), { x: 0, y: 192, width: 64, height: 64 });
  // never larger than the image; a non-square image clips the square's short side
  assert.deepEqual(boxCropRect([10, 10, 150, 60], 200, 100, 256, 3), { x: 0, y: 0, width: 200, height: 100 });
  // random boxes: the crop holds the box and lies in the image
  let seed = 7;
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
  for (let i = 0; i < 500; i++) {
    const W = 20 + rnd(400), H = 20 + rnd(400);
    const x0 = rnd(W), y0 = rnd(H), x1 = x0 + rnd(W - x0), y1 = y0 + rnd(H - y0);
    const r = boxCropRect([x0, y0, x1, y1], W, H, 256, 1 + rnd(4));
    assert.ok(contains(r, [x0, y0, x1, y1]), JSON.stringify({ W, H, x0, y0, x1, y1, r }));
    assert.ok(r.x >= 0 && r.y >= 0 && r.x + r.width <= W && r.y + r.height <= H);
  }
});

test('parseBoxCrop: off or a factor from 1 to 16, with an error that says what to pass', () => {
  assert.equal(parseBoxCrop('off'), 'off');
  assert.equal(parseBoxCrop('2'), 2);
  assert.equal(parseBoxCrop('1.5'), 1.5);
  for (const bad of ['0.5', '', 'x', '17', '-2']) assert.throws(() => parseBoxCrop(bad), /--box-crop must be 'off' or a number from 1 to 16/);
});

async function squaresDataset(dir: string): Promise<void> {
  await mkdir(join(dir, 'images'), { recursive: true });
  await mkdir(join(dir, 'masks'), { recursive: true });
  // dark squares and a disc of 6-40 px on a light, noisy background; label-indexed masks
  for (let k = 0; k < 2; k++) {
    const W = 160, H = 120;
    const img = Buffer.alloc(W * H * 3), mask = Buffer.alloc(W * H);
    for (let i = 0; i < W * H; i++) img.fill(200 + ((i * 7919 + k * 31) % 23), 3 * i, 3 * i + 3);
    const objs = [[10 + k * 5, 12, 6], [60, 40 + k * 10, 14], [110, 70, 40]] as const;
    objs.forEach(([x, y, s], j) => {
      for (let yy = y; yy < Math.min(H, y + s); yy++) for (let xx = x; xx < Math.min(W, x + s); xx++) {
        if (j === 2 && (xx - x - s / 2) ** 2 + (yy - y - s / 2) ** 2 > (s / 2) ** 2) continue;
        mask[yy * W + xx] = j + 1;
        img.fill(40 + j * 10, 3 * (yy * W + xx), 3 * (yy * W + xx) + 3);
      }
    });
    await sharp(img, { raw: { width: W, height: H, channels: 3 } }).png().toFile(join(dir, `images/img${k}.png`));
    await sharp(mask, { raw: { width: W, height: H, channels: 1 } }).png().toFile(join(dir, `masks/img${k}.png`));
  }
}

test('a cropped sample is the same object: its mask pasted back is the original, its box moves with the crop, its image key is its own', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-boxcrop-'));
  await squaresDataset(dir);
  const { samples } = await loadDataset(dir);
  assert.equal(samples.length, 6);
  const keys = new Set<string>();
  for (const s of samples) {
    const c = cropSample(s, 256, 2);
    const r = boxCropRect(s.box, s.width, s.height, 256, 2);
    assert.deepEqual([c.id, c.group, c.label, c.area], [s.id, s.group, s.label, s.area]);
    assert.deepEqual(c.box, [s.box[0] - r.x, s.box[1] - r.y, s.box[2] - r.x, s.box[3] - r.y]);
    assert.deepEqual(uncropMask(await c.loadMask(), r, s.width, s.height), await s.loadMask());
    const img = await c.loadImage(), full = await s.loadImage();
    assert.deepEqual([img.width, img.height], [r.width, r.height]);
    assert.deepEqual([...img.data.subarray(0, 3)], [...full.data.subarray(3 * (r.y * s.width + r.x), 3 * (r.y * s.width + r.x) + 3)]);
    keys.add(c.imageKey);
  }
  assert.equal(keys.size, 6, 'every crop is embedded (and cached) on its own');
});

test('the built-in model crops by default; fedsam evaluate and fedsam predict give the same masks in box crops; the baselines do not move; loose boxes place the crop', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-boxcrop-cli-'));
  await squaresDataset(join(dir, 'data'));
  const common = ['--data', join(dir, 'data'), '--split', 'all', '--cache-dir', join(dir, 'cache'), '--quiet', '--json'];
  const whole = await fedsam(['evaluate', ...common, '--box-crop', 'off']);
  const cropped = await fedsam(['evaluate', ...common]); // the built-in model folder declares fedsam_box_crop 2
  assert.deepEqual((await fedsam(['evaluate', ...common, '--box-crop', '2'])).stdout, cropped.stdout);
  assert.equal(whole.code, 0, whole.stderr);
  assert.equal(cropped.code, 0, cropped.stderr);
  type Doc = { prompts: string; objects: { id: string; dice: number; boxDice: number; otsuDice: number }[] };
  const w = JSON.parse(whole.stdout) as Doc, c = JSON.parse(cropped.stdout) as Doc;
  assert.deepEqual(c.objects.map((o) => [o.id, o.boxDice, o.otsuDice]), w.objects.map((o) => [o.id, o.boxDice, o.otsuDice]));
  assert.notDeepEqual(c.objects.map((o) => o.dice), w.objects.map((o) => o.dice), 'the crop changes what the model sees');

  const { samples } = await loadDataset(join(dir, 'data'));
  for (const s of samples.filter((x) => x.id.startsWith('img0:'))) { // one image: a 6-px square, a 14-px square, a 40-px disc
    const out = join(dir, `${s.id.replace(':', '_')}.png`);
    const p = await fedsam(['predict', '--image', (s.source as { path: string }).path, '--box', s.box.join(','), '--out', out]);
    assert.equal(p.code, 0, p.stderr);
    assert.match(p.stdout, /segmented in the box crop x \d+\.\.\d+, y \d+\.\.\d+/);
    const { data } = await sharp(out).raw().toBuffer({ resolveWithObject: true });
    const pred = new Uint8Array(s.width * s.height);
    for (let i = 0; i < pred.length; i++) pred[i] = data[i * (data.length / pred.length)]! > 127 ? 1 : 0;
    const want = c.objects.find((o) => o.id === s.id)!.dice;
    assert.ok(Math.abs(dice(pred, await s.loadMask()) - want) < 1e-6, `${s.id}: predict ${dice(pred, await s.loadMask())} vs evaluate ${want}`);
  }

  // loose boxes: drawn before cropping (the crop lies around the box a user drew), the same draws as without crops
  const looseWhole = JSON.parse((await fedsam(['evaluate', ...common, '--box-crop', 'off', '--box-jitter', '10', '--seed', '4'])).stdout) as Doc;
  const looseCrop = JSON.parse((await fedsam(['evaluate', ...common, '--box-jitter', '10', '--seed', '4'])).stdout) as Doc;
  assert.match(looseCrop.prompts, /0-10 px.*seed 4, in box crops of 2 box sides/);
  assert.deepEqual(looseCrop.objects.map((o) => [o.id, o.boxDice, o.otsuDice]), looseWhole.objects.map((o) => [o.id, o.boxDice, o.otsuDice]));
  assert.ok(looseCrop.objects.some((o, i) => o.boxDice < c.objects[i]!.boxDice), 'the boxes are loose');
  const bad = await fedsam(['evaluate', ...common, '--box-crop', 'wide']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--box-crop must be 'off' or a number from 1 to 16/);
});
