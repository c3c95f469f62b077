// The fedsam command as a user runs it: real child processes, real files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, cp, writeFile, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { FEDSAM, runFedsam as fedsam } from './helpers/fed-harness.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

test('fedsam --help lists the subcommands', async () => {
  const r = await fedsam(['--help']);
  assert.equal(r.code, 0);
  for (const c of ['verify-reference', 'predict', 'train', 'evaluate', 'synth', 'server', 'client', 'provision', 'simulate', 'pretrain']) assert.match(r.stdout, new RegExp(c));
});

test('the fedsam script runs node with the V8 heap flag the transfer speed depends on', async () => {
  const { execFileSync } = await import('node:child_process');
  const flag = '--initial-old-space-size=64';
  const first = (await readFile(FEDSAM, 'utf8')).split('\n')[0]!;
  // glibc's malloc puts large blocks (ONNX Runtime's arena) on transparent huge pages: see shared/src/onnx/runtime.ts
  const tunable = 'GLIBC_TUNABLES=glibc.malloc.hugetlb=1';
  assert.equal(first, `#!/usr/bin/env -S ${tunable} node ${flag}`);
  // executed directly (as npx and npm's bin links do), the flag reaches the process
  const out = execFileSync(FEDSAM, ['--help'], { env: { ...process.env, NODE_OPTIONS: '--require ' + join(ROOT, 'test/helpers/print-execargv.cjs') } }).toString();
  assert.match(out, new RegExp(`execArgv: .*${flag}`));
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  for (const s of ['fedsam', 'simulate']) assert.match(pkg.scripts[s]!, new RegExp(`^${tunable} node ${flag} bin/fedsam\\.mjs`));
});

test('verify-reference passes on tiny-box and fails on a tampered copy', async () => {
  const ok = await fedsam(['verify-reference', join(ROOT, 'test/fixtures/tiny-box')]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /all \d+ checks within tolerance/);
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-vr-'));
  await cp(join(ROOT, 'test/fixtures/tiny-box'), dir, { recursive: true });
  // Different model weights: same format, wrong numbers.
  await cp(join(ROOT, 'test/fixtures/tiny-train/params_after_6_steps_lr0.001.safetensors'), join(dir, 'decoder.safetensors'));
  const { readSafetensors, writeSafetensors } = await import('@fedsam/shared/safetensors');
  const model = (await readSafetensors(join(dir, 'model.safetensors'))).tensors;
  for (const [k, v] of (await readSafetensors(join(dir, 'decoder.safetensors'))).tensors) model.set(k, v);
  await writeSafetensors(join(dir, 'model.safetensors'), model);
  const bad = await fedsam(['verify-reference', dir]);
  assert.equal(bad.code, 1);
  assert.match(bad.stdout, /FAIL/);
});

test('predict writes a mask at the image size and an overlay; bad arguments give one-line errors', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-predict-'));
  const img = join(dir, 'img.png');
  const W = 90, H = 60;
  const px = Buffer.alloc(W * H * 3, 40);
  for (let y = 20; y < 40; y++) for (let x = 30; x < 60; x++) px.fill(220, (y * W + x) * 3, (y * W + x) * 3 + 3);
  await sharp(px, { raw: { width: W, height: H, channels: 3 } }).png().toFile(img);
  const r = await fedsam(['predict', '--image', img, '--box', '28,18,62,42', '--point', '45,30,1', '--out', join(dir, 'mask.png'), '--overlay', join(dir, 'ov.png')]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /predicted IoU: -?\d/);
  const meta = await sharp(join(dir, 'mask.png')).metadata();
  assert.equal(meta.width, W);
  assert.equal(meta.height, H);
  assert.equal((await sharp(join(dir, 'ov.png')).metadata()).width, W);

  const outside = await fedsam(['predict', '--image', img, '--box', '10,10,200,50', '--out', join(dir, 'm2.png')]);
  assert.notEqual(outside.code, 0);
  assert.match(outside.stderr, /outside the image \(90x60/);
  assert.equal(outside.stderr.trim().split('\n').length, 1, outside.stderr);

  await writeFile(join(dir, 'broken.png'), 'not an image');
  const unreadable = await fedsam(['predict', '--image', join(dir, 'broken.png'), '--box', '1,1,5,5', '--out', join(dir, 'm3.png')]);
  assert.notEqual(unreadable.code, 0);
  assert.match(unreadable.stderr, /cannot read image .*broken\.png/);

  const noModel = await fedsam(['predict', '--model', join(dir, 'nope'), '--image', img, '--box', '1,1,5,5', '--out', join(dir, 'm4.png')]);
  assert.notEqual(noModel.code, 0);
  assert.match(noModel.stderr, /does not exist/);

  const modelDir = join(dir, 'model');
  assert.equal((await fedsam(['save-default-model', '--out', modelDir])).code, 0);
  const { rm } = await import('node:fs/promises');
  await rm(join(modelDir, 'model.safetensors'));
  const missingFile = await fedsam(['predict', '--model', modelDir, '--image', img, '--box', '1,1,5,5', '--out', join(dir, 'm5.png')]);
  assert.notEqual(missingFile.code, 0);
  assert.match(missingFile.stderr, /model\.safetensors/);
  assert.equal(missingFile.stderr.trim().split('\n').length, 1, missingFile.stderr);

  const badBox = await fedsam(['predict', '--image', img, '--box', '1,2,3', '--out', join(dir, 'm6.png')]);
  assert.equal(badBox.code, 1);
  assert.match(badBox.stderr, /--box expects 4 comma-separated numbers/);
});

test('synth, train and evaluate from the command line', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-cli-train-'));
  const s = await fedsam(['synth', '--out', join(dir, 'data'), '--sites', '1', '--images-per-site', '6', '--size', '128']);
  assert.equal(s.code, 0, s.stderr);
  assert.match(s.stdout, /box/i);
  const env = { FEDSAM_CACHE_DIR: join(dir, 'cache') };
  const t = await fedsam(['train', '--data', join(dir, 'data', 'site-1'), '--epochs', '1', '--out', join(dir, 'out'), '--quiet'], env);
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout, /^before /m);
  const files = await readdir(join(dir, 'out'));
  for (const f of ['config.json', 'model.safetensors', 'preprocessor_config.json', 'metrics.json']) assert.ok(files.includes(f), f);
  const e = await fedsam(['evaluate', '--model', join(dir, 'out'), '--data', join(dir, 'data', 'site-1'), '--overlays', join(dir, 'ov'), '--overlay-count', '2', '--quiet'], env);
  assert.equal(e.code, 0, e.stderr);
  assert.match(e.stdout, /box Dice/);
  assert.equal((await readdir(join(dir, 'ov'))).length, 2);
});

test('simulate: when every site fails a round it stops after three attempts, backing off, and says why', { timeout: 120_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-cli-simfail-'));
  const t0 = performance.now();
  const r = await fedsam(['simulate', '--sites', '2', '--rounds', '2', '--images-per-site', '4', '--lr', '1e30', '--out', join(dir, 'out'), '--quiet', '--no-dashboard']);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /round \d: only 0 of the 2 required updates after 3 attempts \(site-1: .*training diverged.*site-2: .*training diverged/);
  assert.equal(r.stderr.split('\n').filter((l) => l.includes('"round_retry"')).length, 3, 'three attempts, no busy loop');
  assert.ok(performance.now() - t0 > 3000, 'the retries waited 1 s and 2 s');
});

test('simulate: aggregator + 2 sites over loopback gRPC, per-round table and --history JSON', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-cli-sim-'));
  const r = await fedsam(['simulate', '--sites', '2', '--rounds', '1', '--epochs', '1', '--images-per-site', '4', '--out', join(dir, 'out'), '--history', join(dir, 'h.json'), '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /weighted mean Dice/);
  const h = JSON.parse(await readFile(join(dir, 'h.json'), 'utf8'));
  assert.deepEqual(h.map((x: { round: number }) => x.round), [0, 1]);
  for (const row of h) {
    assert.equal(typeof row.mean_dice, 'number');
    assert.deepEqual(Object.keys(row.sites).sort(), ['site-1', 'site-2']);
    for (const s of Object.values(row.sites) as Array<{ dice: number; iou: number; num_examples: number }>) {
      assert.ok(s.dice >= 0 && s.dice <= 1 && s.iou >= 0 && s.num_examples > 0);
    }
  }
  assert.ok((await readdir(join(dir, 'out', 'final-model'))).includes('model.safetensors'));
});

test('simulate --train-seed: the same data and split with other training draws; equal to --seed it is the default run', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-cli-tseed-'));
  const run = async (name: string, extra: string[]) => {
    const r = await fedsam(['simulate', '--sites', '2', '--rounds', '1', '--images-per-site', '3', '--image-size', '96', '--seed', '3', ...extra,
      '--out', join(dir, name), '--history', join(dir, `${name}.json`), '--quiet', '--no-dashboard']);
    assert.equal(r.code, 0, r.stderr);
    return {
      stdout: r.stdout,
      history: JSON.parse(await readFile(join(dir, `${name}.json`), 'utf8')) as Array<{ round: number; sites: Record<string, { dice: number; num_examples: number }> }>,
      weights: await readFile(join(dir, name, 'final-model', 'model.safetensors')),
    };
  };
  const base = await run('default', []);
  const same = await run('same', ['--train-seed', '3']);
  const other = await run('other', ['--train-seed', '8']);
  assert.ok(base.weights.equals(same.weights), '--train-seed equal to --seed trains exactly as the default');
  assert.doesNotMatch(base.stdout, /training seed/);
  assert.match(other.stdout, /training seed 8/);
  // round 0 scores the untouched model on each site's validation split: same data, same split
  assert.deepEqual(other.history[0], base.history[0]);
  assert.ok(!other.weights.equals(base.weights), 'another training seed draws other batches and box noise');
});
