// SAM graph parity against golden tensors from the original PyTorch SAM (float64), vendored from
// ../shared/fixtures/sam-reference/tiny-box: every case, every intermediate, multimask on and off.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@fedsam/shared/backend';
import { verifyReferenceFolder } from '@fedsam/shared/reference';
import { fileURLToPath } from 'node:url';

const TINY_BOX = fileURLToPath(new URL('./fixtures/tiny-box', import.meta.url));

test('tiny-box: every tensor of every case within the manifest tolerance', async () => {
  await initBackend();
  const before = tf.memory().numTensors;
  const { rows } = await verifyReferenceFolder(TINY_BOX);
  const names = rows.map((r) => r.tensor);
  for (const c of ['box', 'points', 'points_box', 'points_padded', 'mask']) {
    for (const f of ['sparse_embeddings', 'dense_embeddings', 'single.pred_masks', 'single.iou_scores', 'multi.pred_masks', 'multi.iou_scores']) {
      assert.ok(names.includes(`${c}.${f}`), `${c}.${f} was checked`);
    }
  }
  assert.ok(names.includes('image_embeddings') && names.includes('image_positional_embeddings'));
  const failed = rows.filter((r) => !r.pass);
  assert.deepEqual(failed, [], `over tolerance: ${failed.map((r) => `${r.tensor} maxAbs=${r.maxAbs}`).join(', ')}`);
  // A float32 implementation is far inside the tolerance: catch a drift that would still pass it.
  for (const r of rows) assert.ok(r.maxAbs < 2e-5, `${r.tensor} max abs error ${r.maxAbs}`);
  assert.equal(tf.memory().numTensors, before, 'no tensors leaked');
});
