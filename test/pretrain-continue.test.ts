// Continuing a pretrained model (--init) and box-crop scenes (--crop-share): the crop sample is the object as a
// cropping model sees it at inference, and a run from a model's weights starts from them, not from random ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { boxCropRect } from '@fedsam/shared/boxCrop';
import { initBackend } from '@fedsam/shared/backend';
import { loadSamCheckpoint } from '@fedsam/shared/checkpoint/load';
import { hashWeights } from '@fedsam/shared/checkpoint/hash';
import { initSamWeights } from '@fedsam/shared/model/init';
import { architectureConfig } from '@fedsam/shared/pretrain/architecture';
import { corpusSource } from '@fedsam/shared/pretrain/corpus';
import { withBoxCrops } from '@fedsam/shared/pretrain/cropScenes';
import { runPretrain } from '@fedsam/shared/pretrain/loop';
import { maskGeometry } from '@fedsam/shared/pretrain/prompts';
import { Rng } from '@fedsam/shared/rng';
import type { HostTensor } from '@fedsam/shared/safetensors';
import { runFedsam as fedsam } from './helpers/fed-harness.ts';

const count = (m: Uint8Array) => m.reduce((a, v) => a + v, 0);

test('a box-crop scene is one whole object in the square of 2 box sides around its box; share 0 changes nothing', () => {
  const corpus = corpusSource({ split: 'train' });
  const crops = withBoxCrops(corpus, 1, 256);
  let cropped = 0;
  for (let i = 0; i < 40; i++) {
    const whole = corpus(i, new Rng(`t/${i}`));
    const s = crops(i, new Rng(`t/${i}`));
    assert.deepEqual(withBoxCrops(corpus, 0, 256)(i, new Rng(`t/${i}`)), whole);
    assert.deepEqual(crops(i, new Rng(`t/${i}`)), s, 'pure');
    const objects = whole.masks.filter((m) => count(m) > 0);
    if (!objects.length) { assert.deepEqual(s, whole); continue; }
    cropped++;
    assert.equal(s.masks.length, 1);
    assert.equal(s.image.length, s.width * s.height * 3);
    // the object is one of the scene's, whole (nothing of it cut off), and the crop is where boxCropRect puts it
    const source = objects.find((m) => {
      const g = maskGeometry(m, whole.width, whole.height)!;
      const r = boxCropRect([g.x0, g.y0, g.x1, g.y1], whole.width, whole.height, 256);
      return r.width === s.width && r.height === s.height && count(m) === count(s.masks[0]!);
    });
    assert.ok(source, `sample ${i}: the crop holds one of the scene's objects entirely`);
    const g = maskGeometry(s.masks[0]!, s.width, s.height)!;
    const long = Math.max(g.x1 - g.x0 + 1, g.y1 - g.y0 + 1);
    assert.ok(Math.max(s.width, s.height) >= Math.min(Math.max(whole.width, whole.height), 2 * long - 1), `sample ${i}: the crop is about 2 box sides`);
  }
  assert.ok(cropped >= 30);
  assert.throws(() => withBoxCrops(corpus, 1.5, 256), /share must be in \[0, 1\]/);
});

test('a run with init weights starts from them, and a resume from other init weights is refused', async () => {
  await initBackend();
  const config = architectureConfig({ layers: 1, width: 16, heads: 2, imageSize: 64, patchSize: 8, windowSize: 4, decoderWidth: 16, decoderLayers: 1, decoderHeads: 2 });
  const source = withBoxCrops(corpusSource({ size: 64 }), 0.5, 64);
  const init = initSamWeights(config, 11);
  const other = initSamWeights(config, 12);
  const options = { batchSize: 1, promptsPerImage: 1, lr: 1e-6, warmupSteps: 0, steps: 2, checkpointEvery: 1, seed: 0 };
  const out = await mkdtemp(join(tmpdir(), 'fedsam-pretrain-init-'));
  await runPretrain({ out, config, source, sourceName: 'c', options, init: { weights: init, name: hashWeights(init) }, stopAfter: 1 });
  const after = (await loadSamCheckpoint(out)).weights;
  // one Adam step of lr 1e-6 moves each weight by about 1e-6: close to the init weights, far from seed 0's random ones
  const maxDiff = (a: Map<string, HostTensor>, b: Map<string, HostTensor>) => Math.max(...[...a].map(([n, t]) => {
    const x = t.data as Float32Array, y = b.get(n)!.data as Float32Array;
    return x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i]!)), 0);
  }));
  assert.ok(maxDiff(after, init) < 1e-5, `moved ${maxDiff(after, init)} from the init weights`);
  assert.ok(maxDiff(after, initSamWeights(config, 0)) > 0.01);
  await assert.rejects(runPretrain({ out, config, source, sourceName: 'c', options, init: { weights: other, name: hashWeights(other) }, resume: true }), /other settings/);
  const r = await runPretrain({ out, config, source, sourceName: 'c', options, init: { weights: init, name: hashWeights(init) }, resume: true });
  assert.equal(r.step, 2);
});

test('fedsam pretrain --init continues a model folder; --config beside it is refused', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-cli-pretrain-init-'));
  const arch = 'layers=1,width=16,heads=2,imageSize=64,patchSize=8,windowSize=4,decoderWidth=16,decoderLayers=1,decoderHeads=2';
  const first = await fedsam(['pretrain', '--out', join(dir, 'a'), '--steps', '1', '--batch-size', '1', '--config', arch, '--quiet']);
  assert.equal(first.code, 0, first.stderr);
  const both = await fedsam(['pretrain', '--out', join(dir, 'b'), '--init', join(dir, 'a'), '--config', arch, '--steps', '1']);
  assert.equal(both.code, 1);
  assert.match(both.stderr, /--init takes the architecture from the model folder/);
  const next = await fedsam(['pretrain', '--out', join(dir, 'b'), '--init', join(dir, 'a'), '--crop-share', '1', '--steps', '1', '--batch-size', '1']);
  assert.equal(next.code, 0, next.stderr);
  assert.match(next.stdout, /from .*\ba\b.*\+crops1/);
  const a = (await loadSamCheckpoint(join(dir, 'a'))).config, b = (await loadSamCheckpoint(join(dir, 'b'))).config;
  assert.deepEqual(b, a, 'the architecture of the init folder');
});
