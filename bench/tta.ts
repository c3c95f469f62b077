// Test-time augmentation for a box-cropping model (README, "Where the built-in model misses"): each object's box crop
// is segmented as it is and in flipped / transposed copies, and at several crop sizes; the probabilities, mapped back
// to the image, are averaged and thresholded at 0.5. Prints Dice per setting beside the plain prediction.
//
//   node --import tsx bench/tta.ts --data DIR [--model DIR] [--transforms 1,4,8] [--contexts 2 --contexts 1.5,2,2.5]
//
// --transforms N: the first N of the eight symmetries of the square (identity, flip x, flip y, both, then the same
// after a transpose); each --contexts is one set of crop sizes (box sides) averaged together. DIR: images/ + masks/
// (e.g. `fedsam synth --generator corpus --split heldout --seed 1 --images 24 --out DIR`).
import { parseArgs } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '@fedsam/shared/backend';
import { loadModel } from '@fedsam/shared/model/presets';
import { renderTable, type Cell } from '@fedsam/shared/table';
import { inferenceFor } from '@fedsam/shared/samInference';
import { postProcessMask } from '@fedsam/shared/processor';
import { uncropMask, BOX_CROP_CONTEXT } from '@fedsam/shared/boxCrop';
import { loadDataset } from '@fedsam/client/data/datasets';
import { cropSample } from '@fedsam/client/data/cropSample';
import { dice } from '@fedsam/client/data/metrics';
import type { Box, Sample } from '@fedsam/client/data/types';
import { prepareItems, modelBox, lowResSize } from '@fedsam/client/engine/trainer';
import { EmbeddingCache } from '@fedsam/client/engine/cache';

const { values: args } = parseArgs({
  options: {
    data: { type: 'string' },
    model: { type: 'string' },
    transforms: { type: 'string', default: '1,4,8' },
    contexts: { type: 'string', multiple: true },
  },
});
if (!args.data) throw new Error('--data DIR is required (images/ + masks/)');
await initBackend();

/** One symmetry of the square: transpose first, then flips. */
interface Symmetry { transpose: boolean; flipX: boolean; flipY: boolean }
const SYMMETRIES: Symmetry[] = [false, true].flatMap((transpose) => [false, true].flatMap((flipY) =>
  [false, true].map((flipX) => ({ transpose, flipX, flipY }))));

/** `a` (w×h, c channels) under symmetry t; the result's width and height swap with a transpose. */
function apply<A extends Uint8Array | Float32Array>(a: A, w: number, h: number, c: number, t: Symmetry): A {
  const out = new (a.constructor as new (n: number) => A)(a.length);
  const W = t.transpose ? h : w, H = t.transpose ? w : h;
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const tx = t.flipX ? W - 1 - x : x, ty = t.flipY ? H - 1 - y : y; // position before the flips
    const sx = t.transpose ? ty : tx, sy = t.transpose ? tx : ty; // and before the transpose
    for (let k = 0; k < c; k++) out[(y * W + x) * c + k] = a[(sy * w + sx) * c + k]!;
  }
  return out;
}
/** Undo `apply` on a one-channel map of the transformed frame (W×H). */
function unapply(a: Float32Array, W: number, H: number, t: Symmetry): Float32Array {
  const unflipped = apply(a, W, H, 1, { transpose: false, flipX: t.flipX, flipY: t.flipY });
  return t.transpose ? apply(unflipped, W, H, 1, { transpose: true, flipX: false, flipY: false }) : unflipped;
}
function applyToBox([x0, y0, x1, y1]: Box, w: number, h: number, t: Symmetry): Box {
  if (t.transpose) [x0, y0, x1, y1, w, h] = [y0, x0, y1, x1, h, w];
  if (t.flipX) [x0, x1] = [w - 1 - x1, w - 1 - x0];
  if (t.flipY) [y0, y1] = [h - 1 - y1, h - 1 - y0];
  return [x0, y0, x1, y1];
}
function transformed(s: Sample, t: Symmetry): Sample {
  return {
    ...s,
    imageKey: `${s.imageKey}#sym=${+t.transpose}${+t.flipX}${+t.flipY}`,
    box: applyToBox(s.box, s.width, s.height, t),
    width: t.transpose ? s.height : s.width, height: t.transpose ? s.width : s.height,
    loadImage: async () => {
      const im = await s.loadImage();
      return { ...im, data: apply(im.data, im.width, im.height, 3, t), width: t.transpose ? im.height : im.width, height: t.transpose ? im.width : im.height };
    },
    loadMask: async () => apply(await s.loadMask(), s.width, s.height, 1, t),
  };
}

const loaded = await loadModel(args.model);
const { samples } = await loadDataset(args.data);
const work = await mkdtemp(join(tmpdir(), 'fedsam-tta-'));
const cache = new EmbeddingCache({ dir: join(work, 'cache'), visionHash: loaded.visionHash, processor: loaded.processor.config });
const L = lowResSize(loaded), pad = loaded.processor.config.pad_size, input = loaded.processor.longestEdge;

/** Per object: the sigmoid of the model's logits in the whole image's frame (0 outside the crop), for one crop size and symmetry. */
async function probabilities(context: number, t: Symmetry): Promise<Float32Array[]> {
  const crops = samples.map((s) => cropSample(s, input, context));
  const items = await prepareItems(loaded, cache, crops.map((c) => transformed(c, t)), { quiet: true });
  const out: Float32Array[] = [];
  for (const [i, it] of items.entries()) {
    const e = (await cache.get(it.key))!;
    const box = modelBox(it.sample.box, it.originalSize, it.reshapedSize);
    const r = await inferenceFor(loaded).decode({ embeddingsNHWC: { data: e.data, shape: e.shape }, inputBoxes: { data: Float32Array.from(box), shape: [1, 1, 4] }, multimask: false });
    const logits = unapply(postProcessMask(r.predMasks.data.subarray(0, L * L), [L, L], it.originalSize, it.reshapedSize, pad), it.sample.width, it.sample.height, t);
    const c = crops[i]!, s = samples[i]!;
    out.push(uncropMask(logits.map((v) => 1 / (1 + Math.exp(-v))), { x: c.cropOf!.x, y: c.cropOf!.y, width: c.width, height: c.height }, s.width, s.height));
  }
  return out;
}

try {
  const memo = new Map<string, Float32Array[]>();
  const probs = async (c: number, k: number) => {
    const key = `${c}/${k}`;
    if (!memo.has(key)) memo.set(key, await probabilities(c, SYMMETRIES[k]!));
    return memo.get(key)!;
  };
  const masks = await Promise.all(samples.map((s) => s.loadMask()));
  const rows: Cell[][] = [];
  for (const cs of args.contexts ?? [String(BOX_CROP_CONTEXT)]) {
    const contexts = cs.split(',').map(Number);
    for (const n of args.transforms!.split(',').map(Number)) {
      const sum = samples.map((s) => new Float32Array(s.width * s.height));
      for (const c of contexts) for (let k = 0; k < n; k++) (await probs(c, k)).forEach((p, i) => { for (let j = 0; j < p.length; j++) sum[i]![j] += p[j]!; });
      const passes = n * contexts.length;
      const d = sum.reduce((acc, p, i) => acc + dice(p.map((v) => (v / passes > 0.5 ? 1 : 0)), masks[i]!), 0) / samples.length;
      rows.push([contexts.join(', '), n, passes, d]);
    }
  }
  process.stdout.write(`model ${loaded.source}; ${samples.length} objects in ${args.data}; tight box prompts\n`);
  process.stdout.write(renderTable(['crop sizes (box sides)', 'symmetries', 'passes per object', 'Dice'], rows) + '\n');
} finally {
  await rm(work, { recursive: true, force: true });
}
