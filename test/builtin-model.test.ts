// The shipped fedsam-tiny (shared/models/fedsam-tiny): its shape is the pretraining defaults' with the patches halved, the README names its
// hash, it reproduces the held-out Dice its pretraining run recorded, and it segments a dark object on a light photo.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { DEFAULT_MODEL_DIR } from '@fedsam/shared/model/presets';
import { architectureConfig } from '@fedsam/shared/pretrain/architecture';
import { halvedPatchConfig } from '@fedsam/shared/pretrain/refine';
import { loadSamCheckpoint } from '@fedsam/shared/checkpoint/load';
import type { CheckpointEval } from '@fedsam/client/local/checkpointEval';
import { REPO_ROOT, runFedsam as fedsam, tempDir } from './helpers/fed-harness.ts';

test('the built-in model has the pretraining defaults\' shape with its patches halved (its recipe), and the README names its sha256', async () => {
  const { config } = await loadSamCheckpoint(DEFAULT_MODEL_DIR);
  const shape = (c: unknown) => JSON.parse(JSON.stringify(c, (k, v) => (k === 'raw' || k === 'model_type' ? undefined : v)));
  assert.deepEqual(shape(config), shape(halvedPatchConfig(architectureConfig({}))));
  const sha = createHash('sha256').update(await readFile(join(DEFAULT_MODEL_DIR, 'model.safetensors'))).digest('hex');
  assert.ok((await readFile(join(REPO_ROOT, 'README.md'), 'utf8')).includes(sha), `README.md should give the built-in model's sha256 ${sha}`);
});

test('the built-in model reproduces the held-out Dice its pretraining run recorded (corpus held-out split, seed 1)', { timeout: 300_000 }, async () => {
  const log = (await readFile(join(DEFAULT_MODEL_DIR, 'eval-log.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as CheckpointEval);
  const recorded = log.at(-1)!;
  const dir = await tempDir('fedsam-builtin-');
  const s = await fedsam(['synth', '--generator', 'corpus', '--split', 'heldout', '--seed', '1', '--images', '24', '--out', join(dir, 'heldout')]);
  assert.equal(s.code, 0, s.stderr);
  const evaluate = async (crop: string[]) => {
    const e = await fedsam(['evaluate', '--data', join(dir, 'heldout'), '--split', 'all', '--json', '--quiet', ...crop], { FEDSAM_CACHE_DIR: join(dir, 'cache') });
    assert.equal(e.code, 0, e.stderr);
    return (JSON.parse(e.stdout) as { mean: { n: number; dice: number; boxDice: number; otsuDice: number } }).mean;
  };
  // the run recorded whole-image Dice and Dice in box crops, which the model folder declares and evaluate uses by default
  const mean = await evaluate(['--box-crop', 'off']);
  assert.equal(mean.n, recorded.n);
  assert.ok(Math.abs(mean.boxDice - recorded.boxDice) < 1e-9 && Math.abs(mean.otsuDice - recorded.otsuDice) < 1e-9, 'the same held-out objects');
  // the engines and backends differ in the last float bits, which can flip a few boundary pixels
  assert.ok(Math.abs(mean.dice - recorded.dice) < 1e-3, `held-out Dice ${mean.dice} vs recorded ${recorded.dice}`);
  const cropped = await evaluate([]);
  assert.ok(Math.abs(cropped.dice - recorded.boxCropDice) < 1e-3, `held-out Dice in box crops ${cropped.dice} vs recorded ${recorded.boxCropDice}`);
});

test('fedsam predict: on a photo of a dark object on light paper the mask covers the object and little else', { timeout: 120_000 }, async () => {
  const dir = await tempDir('fedsam-photo-');
  const [w, h] = [640, 480];
  const blob = 'M250 140 C 330 100, 420 150, 410 230 C 400 310, 330 350, 270 330 C 200 310, 190 180, 250 140 Z';
  const svg = (body: string) => Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}">${body}</svg>`);
  await sharp(svg(`<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="#f2efe6"/><stop offset="1" stop-color="#d9d4c7"/></linearGradient></defs>
    <rect width="${w}" height="${h}" fill="url(#g)"/><path d="${blob}" fill="#2a2622"/><text x="40" y="440" font-family="sans-serif" font-size="36" fill="#555">FedSAM</text>`))
    .jpeg({ quality: 90 }).toFile(join(dir, 'photo.jpg'));
  const truth = await sharp(svg(`<rect width="${w}" height="${h}" fill="black"/><path d="${blob}" fill="white"/>`)).greyscale().raw().toBuffer();
  const p = await fedsam(['predict', '--image', join(dir, 'photo.jpg'), '--box', '200,110,420,345', '--out', join(dir, 'mask.png'), '--overlay', join(dir, 'overlay.png')]);
  assert.equal(p.code, 0, p.stderr);
  const mask = await sharp(join(dir, 'mask.png')).greyscale().raw().toBuffer();
  let both = 0, predicted = 0, object = 0;
  for (let i = 0; i < mask.length; i++) {
    const m = mask[i]! > 127, t = truth[i]! > 127;
    both += +(m && t);
    predicted += +m;
    object += +t;
  }
  assert.ok(both / object > 0.85, `covers the object: recall ${both / object}`);
  assert.ok(both / predicted > 0.95, `and little else: precision ${both / predicted}`);
  const overlay = await sharp(join(dir, 'overlay.png')).metadata();
  assert.deepEqual([overlay.width, overlay.height], [w, h]);
});
