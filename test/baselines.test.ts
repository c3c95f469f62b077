// The baselines every user reads beside a model's Dice (filled box, Otsu inside the box) and the prompt box on
// overlays: on real image files made with sharp, through the library and through the fedsam command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { readImageRGB } from '@fedsam/shared/image';
import { fmt } from '@fedsam/shared/table';
import { grayFromRGB, otsuInBox, otsuThreshold } from '../client/src/data/otsuInBox.ts';
import { dice } from '../client/src/data/metrics.ts';
import { filledBox, maskBox } from '../client/src/data/mask.ts';
import type { Box } from '../client/src/data/types.ts';
import { boxPrompt } from '../client/src/data/prompts.ts';
import { Rng } from '../client/src/data/rng.ts';
import { runFedsam as fedsam } from './helpers/fed-harness.ts';

const W = 120, H = 100;
const YELLOW = [255, 215, 0];

/** A dark disc on a light background (or the reverse), rendered by librsvg through sharp and written as a PNG. */
async function discPng(file: string, o: { cx: number; cy: number; r: number; fg: string; bg: string }): Promise<Uint8Array> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"><rect width="${W}" height="${H}" fill="${o.bg}"/>` +
    `<circle cx="${o.cx}" cy="${o.cy}" r="${o.r}" fill="${o.fg}"/></svg>`;
  await sharp(Buffer.from(svg)).flatten().png().toFile(file);
  const gt = new Uint8Array(W * H);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) if ((x + 0.5 - o.cx) ** 2 + (y + 0.5 - o.cy) ** 2 <= o.r ** 2) gt[y * W + x] = 1;
  return gt;
}

/** A faint disc (+10 gray levels) on a strong left-to-right ramp: Otsu splits the ramp, not the object. */
async function faintOnRampPng(file: string): Promise<Uint8Array> {
  const px = Buffer.alloc(W * H * 3);
  const gt = new Uint8Array(W * H);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const inside = (x + 0.5 - 60) ** 2 + (y + 0.5 - 50) ** 2 <= 22 ** 2;
      gt[y * W + x] = inside ? 1 : 0;
      px.fill(Math.round(20 + (200 * x) / (W - 1)) + (inside ? 10 : 0), 3 * (y * W + x), 3 * (y * W + x) + 3);
    }
  }
  await sharp(px, { raw: { width: W, height: H, channels: 3 } }).png().toFile(file);
  return gt;
}

async function otsuDiceOfFile(file: string, gt: Uint8Array) {
  const img = await readImageRGB(file);
  const box = maskBox(gt, W, H)! as Box;
  const r = otsuInBox(grayFromRGB(img.data, W, H), W, H, box);
  return { ...r, dice: dice(r.mask, gt), boxDice: dice(filledBox(box, W, H), gt), box };
}

test('Otsu threshold of a two-level histogram falls between the levels and separates them fully', () => {
  const h = new Float64Array(256);
  h[40] = 300;
  h[200] = 100;
  const { threshold, separability } = otsuThreshold(h);
  assert.ok(threshold >= 40 && threshold < 200, `threshold ${threshold}`);
  assert.ok(Math.abs(separability - 1) < 1e-12, `separability ${separability}`);
  assert.equal(otsuThreshold(new Float64Array(256)).separability, 0);
});

test('Otsu in the box finds a dark disc on a light background and a light disc on a dark one (no ground truth used)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-otsu-'));
  const dark = await discPng(join(dir, 'dark.png'), { cx: 58, cy: 47, r: 27, fg: 'rgb(40,45,60)', bg: 'rgb(225,222,210)' });
  const a = await otsuDiceOfFile(join(dir, 'dark.png'), dark);
  assert.equal(a.polarity, 'dark');
  assert.ok(a.dice > 0.95, `Otsu Dice ${a.dice}`);
  assert.ok(a.dice > a.boxDice + 0.1, `Otsu ${a.dice} vs box ${a.boxDice}`);
  // nothing outside the box
  const inBox = filledBox(a.box, W, H);
  for (let i = 0; i < a.mask.length; i++) if (a.mask[i] && !inBox[i]) assert.fail(`foreground outside the box at ${i}`);
  const light = await discPng(join(dir, 'light.png'), { cx: 70, cy: 52, r: 18, fg: 'rgb(250,240,120)', bg: 'rgb(20,30,35)' });
  const b = await otsuDiceOfFile(join(dir, 'light.png'), light);
  assert.equal(b.polarity, 'bright');
  assert.ok(b.dice > 0.95, `Otsu Dice ${b.dice}`);
});

test('the Otsu polarity rule takes a ring, not its hole, and a tiny object that fills most of its box', () => {
  // a dark annulus (r 10..20) on light: its hole is as light as the outside, and central
  const gray = new Uint8Array(W * H).fill(200), ringGt = new Uint8Array(W * H);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const d = Math.hypot(x - 40, y - 40);
      if (d >= 10 && d <= 20) { gray[y * W + x] = 60; ringGt[y * W + x] = 1; }
    }
  }
  const ring = otsuInBox(gray, W, H, maskBox(ringGt, W, H)!);
  assert.equal(ring.polarity, 'dark');
  assert.ok(dice(ring.mask, ringGt) > 0.99);
  // a 4x4 square without its corners, in its tight box: 8 of the 12 outline pixels are object, so "the class rarer
  // on the outline" would take the corners; relative to its share of the box (12 of 16) the object is the rarer one
  const g2 = new Uint8Array(W * H).fill(30), tinyGt = new Uint8Array(W * H);
  for (let y = 81; y <= 84; y++) {
    for (let x = 91; x <= 94; x++) {
      if ((x === 91 || x === 94) && (y === 81 || y === 84)) continue;
      g2[y * W + x] = 220;
      tinyGt[y * W + x] = 1;
    }
  }
  const tiny = otsuInBox(g2, W, H, maskBox(tinyGt, W, H)!);
  assert.equal(tiny.polarity, 'bright');
  assert.ok(dice(tiny.mask, tinyGt) > 0.99);
});

test('Otsu in the box fails on a faint object over a strong ramp (where a learned model must do better)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-otsu-'));
  const gt = await faintOnRampPng(join(dir, 'ramp.png'));
  const r = await otsuDiceOfFile(join(dir, 'ramp.png'), gt);
  assert.ok(r.dice < 0.75, `Otsu Dice ${r.dice} on a faint disc over a ramp`);
});

function isBoxColour(px: Buffer, i: number): boolean {
  return px[3 * i] === YELLOW[0] && px[3 * i + 1] === YELLOW[1] && px[3 * i + 2] === YELLOW[2];
}

/** Every pixel of the rectangle's outline is yellow, and no yellow pixel is off the outline. */
async function assertBoxDrawn(file: string, box: Box) {
  const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.width, W);
  const [x0, y0, x1, y1] = box.map(Math.round);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const onOutline = x >= x0! && x <= x1! && y >= y0! && y <= y1! && (x === x0 || x === x1 || y === y0 || y === y1);
      assert.equal(isBoxColour(data, y * W + x), onOutline, `pixel ${x},${y} of ${file}`);
    }
  }
}

test('fedsam evaluate prints the Otsu baseline per object and as a mean (text and --json); overlays and predict draw the prompt box', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-otsu-eval-'));
  await mkdir(join(dir, 'data/images'), { recursive: true });
  await mkdir(join(dir, 'data/masks'), { recursive: true });
  const gts = {
    disc: await discPng(join(dir, 'data/images/disc.png'), { cx: 58, cy: 47, r: 27, fg: 'rgb(40,45,60)', bg: 'rgb(225,222,210)' }),
    ramp: await faintOnRampPng(join(dir, 'data/images/ramp.png')),
  };
  const expected: Record<string, { otsu: number; box: number }> = {};
  for (const [name, gt] of Object.entries(gts)) {
    await sharp(Buffer.from(gt.map((v) => v * 255)), { raw: { width: W, height: H, channels: 1 } }).png().toFile(join(dir, `data/masks/${name}.png`));
    const r = await otsuDiceOfFile(join(dir, `data/images/${name}.png`), gt);
    expected[name] = { otsu: r.dice, box: r.boxDice };
  }
  const common = ['--data', join(dir, 'data'), '--split', 'all', '--cache-dir', join(dir, 'cache'), '--quiet'];
  const j = await fedsam(['evaluate', ...common, '--json', '--overlays', join(dir, 'ov')]);
  assert.equal(j.code, 0, j.stderr);
  const doc = JSON.parse(j.stdout) as { mean: { otsuDice: number; boxDice: number; n: number }; objects: { id: string; otsuDice: number; boxDice: number }[] };
  assert.equal(doc.mean.n, 2);
  for (const o of doc.objects) {
    const e = expected[o.id.split(':')[0]!]!;
    assert.ok(Math.abs(o.otsuDice - e.otsu) < 1e-9, `${o.id}: ${o.otsuDice} vs ${e.otsu}`);
    assert.ok(Math.abs(o.boxDice - e.box) < 1e-9, `${o.id}: ${o.boxDice} vs ${e.box}`);
  }
  assert.ok(Math.abs(doc.mean.otsuDice - (expected.disc!.otsu + expected.ramp!.otsu) / 2) < 1e-9);
  // the overlays draw each object's prompt box
  const ovs = (await readdir(join(dir, 'ov'))).sort();
  assert.equal(ovs.length, 2);
  for (const f of ovs) await assertBoxDrawn(join(dir, 'ov', f), maskBox(f.includes('disc') ? gts.disc : gts.ramp, W, H)! as Box);

  const t = await fedsam(['evaluate', ...common]);
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout, /Otsu Dice/);
  assert.match(t.stdout, new RegExp(`disc\\S*\\s+\\d+\\s+\\S+\\s+\\S+\\s+${fmt(expected.disc!.box)}\\s+${fmt(expected.disc!.otsu)}`));

  // --box-jitter: loose boxes drawn from --seed, the same for the model and both baselines, and on the overlays
  const loose = await fedsam(['evaluate', ...common, '--json', '--box-jitter', '12', '--seed', '3', '--overlays', join(dir, 'ov-loose')]);
  assert.equal(loose.code, 0, loose.stderr);
  const ld = JSON.parse(loose.stdout) as { prompts: string; objects: { id: string; otsuDice: number; boxDice: number }[] };
  assert.match(ld.prompts, /0-12 px.*seed 3/);
  const rng = new Rng(3).fork('eval-boxes');
  const drawn = new Map<string, Box>();
  for (const o of ld.objects) {
    const name = o.id.split(':')[0]!;
    const gt = gts[name as keyof typeof gts];
    const want = boxPrompt(maskBox(gt, W, H)! as Box, W, H, rng, 12).map(Math.round) as Box;
    drawn.set(name, want);
    assert.ok(Math.abs(o.boxDice - dice(filledBox(want, W, H), gt)) < 1e-9, `${o.id}: the box baseline uses the loose box`);
    assert.ok(o.boxDice < expected[name]!.box, `${o.id}: a loose box scores below the tight one`);
  }
  for (const f of (await readdir(join(dir, 'ov-loose'))).sort()) await assertBoxDrawn(join(dir, 'ov-loose', f), drawn.get(f.includes('disc') ? 'disc' : 'ramp')!);

  const box: Box = [20, 15, 100, 80];
  const p = await fedsam(['predict', '--image', join(dir, 'data/images/disc.png'), '--box', box.join(','), '--out', join(dir, 'm.png'), '--overlay', join(dir, 'p.png')]);
  assert.equal(p.code, 0, p.stderr);
  await assertBoxDrawn(join(dir, 'p.png'), box);
});
