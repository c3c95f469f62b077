// Training parity against ../shared/fixtures/sam-reference/tiny-train (vendored): MONAI DiceCE loss, every
// mask-decoder gradient, PyTorch-Adam parameters after 1 and 6 steps at two learning rates, loss trajectories.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { fileURLToPath } from 'node:url';
import { initBackend } from '@fedsam/shared/backend';
import { verifyReferenceFolder } from '@fedsam/shared/reference';
import { diceCELossParts } from '@fedsam/shared/train/loss';

const TINY_TRAIN = fileURLToPath(new URL('./fixtures/tiny-train', import.meta.url));

test('tiny-train: loss, gradients and Adam steps match PyTorch', async () => {
  await initBackend();
  const before = tf.memory().numTensors;
  const { rows } = await verifyReferenceFolder(TINY_TRAIN);
  const failed = rows.filter((r) => !r.pass);
  assert.deepEqual(failed.map((r) => r.tensor), []);
  const names = rows.map((r) => r.tensor).join('\n');
  for (const want of ['loss_step0', 'grads (120 tensors', 'params after 1 step lr=0.00001', 'params after 6 steps lr=0.001', 'loss_per_step lr=0.001']) {
    assert.ok(names.includes(want), `${want} was checked`);
  }
  assert.equal(tf.memory().numTensors, before, 'no tensors leaked');
});

test('DiceCE loss equals the closed form on a hand-made example', async () => {
  await initBackend();
  const x = [2, -1, 0.5, -3];
  const t = [1, 0, 1, 0];
  const p = x.map((v) => 1 / (1 + Math.exp(-v)));
  const inter = p.reduce((s, v, i) => s + v * t[i], 0);
  const dice = 1 - (2 * inter + 1e-5) / (t.reduce((s, v) => s + v * v, 0) + p.reduce((s, v) => s + v * v, 0) + 1e-5);
  const bce = x.reduce((s, v, i) => s + Math.max(v, 0) - v * t[i] + Math.log1p(Math.exp(-Math.abs(v))), 0) / 4;
  const parts = diceCELossParts(tf.tensor(x, [1, 1, 2, 2]), tf.tensor(t, [1, 1, 2, 2]));
  assert.ok(Math.abs(parts.dice.dataSync()[0] - dice) < 1e-6);
  assert.ok(Math.abs(parts.bce.dataSync()[0] - bce) < 1e-6);
  assert.ok(Math.abs(parts.loss.dataSync()[0] - dice - bce) < 1e-6);
  tf.dispose([parts.loss, parts.dice, parts.bce]);
});
