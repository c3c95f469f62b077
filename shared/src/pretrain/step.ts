// One pretraining step of the whole model (vision encoder, prompt encoder, mask decoder), SAM's recipe at toy size:
// every prompt is decoded with all four mask tokens; a box or several points train token 0, a single (ambiguous)
// point trains the best of tokens 1-3 (the minimum loss, SAM's multimask training); the IoU head learns the actual
// IoU of each of its four masks (MSE). The mask loss is Dice + bceWeight·BCE (MONAI's DiceCE, which `fedsam train`
// uses, at bceWeight 1) on the low-res logits against the low-res coverage target. From random weights a full-weight
// BCE first drives every logit negative (objects are a few % of the pixels), where the sigmoid kills the Dice
// gradient and the model sits on "all background" for many steps; a smaller BCE weight keeps Dice in charge.
// Gradients of an image are taken one image at a time (peak memory = one image's activations) and averaged.
import * as tf from '@tensorflow/tfjs';
import type { SamModel } from '../model/sam.ts';
import type { Weights } from '../model/ops.ts';
import { visionEncoderNHWC } from '../model/visionEncoder.ts';
import { promptEncoder, type PromptInputs } from '../model/promptEncoder.ts';
import { decodeOne, imageTokens, spatialToBlocked } from '../model/maskDecoder.ts';
import { PROMPT_KEYS, SHARED_POS_EMBED_KEY, TIED_POS_EMBED_KEY, weightOf } from '../checkpoint/keys.ts';
import type { TrainPrompt } from './prompts.ts';

const SMOOTH = 1e-5;

/** One image of a batch: pixel values [1, 3, S, S] (processor output) and its prompts with low-res targets [L·L]. */
export interface PretrainItem {
  pixelValues: Float32Array;
  prompts: { prompt: TrainPrompt; target: Float32Array }[];
}

export interface PretrainLossOptions {
  /** Weight of the IoU-head MSE against the mask loss (SAM: 1). */
  iouWeight: number;
  /** Weight of the BCE term against the Dice term of the mask loss (MONAI DiceCE: 1). */
  bceWeight: number;
}

export interface PretrainStats {
  /** Mean total loss per prompt. */
  loss: number;
  /** Mean DiceCE of the trained mask. */
  maskLoss: number;
  /** Mean IoU-head MSE. */
  iouLoss: number;
  /** Mean Dice / IoU of the trained mask thresholded at 0, against the target thresholded at 0.5. */
  dice: number;
  iou: number;
  prompts: number;
}

/** Parameters pretraining updates: everything but the fixed random Fourier features (a buffer in SAM) and the
 * mask-prompt embedding (no mask prompts in this recipe). */
export function pretrainableNames(names: Iterable<string>): string[] {
  return [...names].filter((n) => n !== SHARED_POS_EMBED_KEY && n !== TIED_POS_EMBED_KEY && !n.startsWith('prompt_encoder.mask_embed.')).sort();
}

/** The prompt-encoder embeddings an image's prompts use (the others get no gradient from it). */
function unusedPromptParams(prompts: TrainPrompt[]): Set<string> {
  const unused = new Set<string>();
  if (!prompts.some((p) => p.points)) for (const k of [PROMPT_KEYS.pointEmbed(0), PROMPT_KEYS.pointEmbed(1), PROMPT_KEYS.notAPointEmbed]) unused.add(weightOf(k));
  if (!prompts.some((p) => p.box)) for (const k of [PROMPT_KEYS.pointEmbed(2), PROMPT_KEYS.pointEmbed(3)]) unused.add(weightOf(k));
  return unused;
}

/* eslint-disable @typescript-eslint/no-explicit-any */
const customGrad = tf.customGrad as unknown as (f: (...args: any[]) => any) => (...xs: tf.Tensor[]) => tf.Tensor;
/** [2, k]: IoU and Dice of each hard mask (logits > 0) against the target (> 0.5); no gradient (the IoU head's target). */
const measured = customGrad((x: tf.Tensor, t: tf.Tensor, save: tf.GradSaveFunc) => {
  save([x, t]);
  return {
    value: tf.tidy(() => {
      const m = tf.cast(tf.greater(x, 0), 'float32');
      const tb = tf.cast(tf.greater(t, 0.5), 'float32');
      const inter = tf.sum(tf.mul(m, tb), 0), sm = tf.sum(m, 0), st = tf.sum(tb);
      const iou = tf.div(inter, tf.add(tf.sub(tf.add(sm, st), inter), 1e-6));
      const dice = tf.div(tf.mul(inter, 2), tf.add(tf.add(sm, st), 1e-6));
      return tf.stack([iou, dice]);
    }),
    gradFunc: (_dy: tf.Tensor, saved: tf.Tensor[]) => [tf.zerosLike(saved[0]!), tf.zerosLike(saved[1]!)],
  };
});

function promptInputs(p: TrainPrompt): PromptInputs {
  return {
    inputBoxes: p.box ? tf.tensor3d([[p.box]]) : undefined,
    inputPoints: p.points ? tf.tensor4d([[p.points]]) : undefined,
    inputLabels: p.labels ? [[p.labels]] : undefined,
  };
}

/**
 * Loss and gradients (mean over the batch's images, each the mean over its prompts) w.r.t. `names`.
 * The caller owns and disposes the returned gradients.
 */
export function pretrainLossAndGrads(model: SamModel, items: PretrainItem[], names: string[], opts: PretrainLossOptions):
  { stats: PretrainStats; grads: Map<string, tf.Tensor> } {
  const config = model.config;
  const S = config.vision.image_size;
  const h = config.prompt.imageEmbeddingSize, w = h, L = 4 * h, C = config.decoder.hidden_size;
  const pos = tf.tidy(() => tf.reshape(model.positionalEmbeddingsNHWC(), [h * w, C]) as tf.Tensor2D);
  const sums = new Map<string, tf.Tensor>();
  const totals = { loss: 0, maskLoss: 0, iouLoss: 0, dice: 0, iou: 0, prompts: 0 };
  try {
    for (const item of items) {
      if (!item.prompts.length) continue;
      const unused = unusedPromptParams(item.prompts.map((p) => p.prompt));
      const used = names.filter((n) => !unused.has(n));
      const px = tf.tensor4d(item.pixelValues, [1, 3, S, S]);
      const targets = item.prompts.map((p) => tf.tidy(() => tf.reshape(spatialToBlocked(tf.tensor2d(p.target, [L, L]), h, w), [16 * h * w, 1])));
      const inputs = item.prompts.map((p) => promptInputs(p.prompt));
      let stats: tf.Tensor | undefined; // [prompts, 4]: mask loss, iou loss, dice, iou of the trained mask
      try {
        const f = (...ps: tf.Tensor[]): tf.Scalar => {
          const local: Weights = new Map(model.weights);
          used.forEach((n, i) => local.set(n, ps[i]!));
          const emb = visionEncoderNHWC(local, config, px, undefined, true);
          const losses: tf.Tensor[] = [];
          const rows: tf.Tensor[] = [];
          item.prompts.forEach(({ prompt }, j) => {
            const { sparse, dense } = promptEncoder(local, config, 1, inputs[j]!);
            const image = imageTokens(emb, dense, 0);
            const out = decodeOne(local, config, { image, pos, sparse: tf.reshape(sparse, [sparse.shape[2], C]) as tf.Tensor2D, selected: [0, 1, 2, 3], iou: true });
            const x = out.logitsBlocked, t = targets[j]!; // [16N, 4], [16N, 1]
            const p = tf.sigmoid(x);
            const inter = tf.sum(tf.mul(p, t), 0);
            const denom = tf.add(tf.sum(tf.square(t)), tf.sum(tf.square(p), 0));
            const dice = tf.sub(1, tf.div(tf.add(tf.mul(inter, 2), SMOOTH), tf.add(denom, SMOOTH)));
            const bce = tf.mean(tf.add(tf.sub(tf.relu(x), tf.mul(x, t)), tf.softplus(tf.neg(tf.abs(x)))), 0);
            const perMask = tf.add(dice, tf.mul(bce, opts.bceWeight)); // [4]
            const chosenIdx = prompt.multimask ? 1 + (tf.argMin(tf.slice(perMask, [1], [3])).dataSync()[0] ?? 0) : 0;
            const maskLoss = tf.reshape(tf.slice(perMask, [chosenIdx], [1]), []);
            const actual = measured(x, t); // [2, 4]
            const iouLoss = tf.mean(tf.square(tf.sub(tf.reshape(out.iou!, [4]), tf.reshape(tf.slice(actual, [0, 0], [1, 4]), [4]))));
            losses.push(tf.add(maskLoss, tf.mul(iouLoss, opts.iouWeight)));
            rows.push(tf.stack([maskLoss, iouLoss, tf.reshape(tf.slice(actual, [1, chosenIdx], [1, 1]), []), tf.reshape(tf.slice(actual, [0, chosenIdx], [1, 1]), [])]));
          });
          stats = tf.keep(tf.stack(rows));
          return tf.mean(tf.stack(losses)) as tf.Scalar;
        };
        const { value, grads } = tf.valueAndGrads(f)(used.map((n) => model.weights.get(n)!));
        totals.loss += value.dataSync()[0]! * item.prompts.length;
        value.dispose();
        const s = stats!.arraySync() as number[][];
        for (const [ml, il, d, iou] of s) {
          totals.maskLoss += ml!; totals.iouLoss += il!; totals.dice += d!; totals.iou += iou!; totals.prompts++;
        }
        used.forEach((n, i) => {
          const g = grads[i]!;
          const prev = sums.get(n);
          if (!prev) sums.set(n, g);
          else { sums.set(n, tf.add(prev, g)); prev.dispose(); g.dispose(); }
        });
      } finally {
        tf.dispose([px, ...targets, ...(stats ? [stats] : [])]);
        for (const i of inputs) tf.dispose([i.inputBoxes, i.inputPoints].filter((t): t is tf.Tensor => !!t));
      }
    }
  } finally {
    pos.dispose();
  }
  const images = items.filter((i) => i.prompts.length).length;
  const grads = new Map<string, tf.Tensor>();
  for (const [n, g] of sums) {
    grads.set(n, images > 1 ? tf.div(g, images) : g);
    if (images > 1) g.dispose();
  }
  const P = Math.max(1, totals.prompts);
  return {
    stats: { loss: totals.loss / P, maskLoss: totals.maskLoss / P, iouLoss: totals.iouLoss / P, dice: totals.dice / P, iou: totals.iou / P, prompts: totals.prompts },
    grads,
  };
}

/** Scale gradients in place so their global L2 norm is at most maxNorm; returns the norm before clipping. */
export function clipGradNorm(grads: Map<string, tf.Tensor>, maxNorm: number): number {
  const norm = Math.sqrt(tf.tidy(() => tf.addN([...grads.values()].map((g) => tf.sum(tf.square(g)))).dataSync()[0]!));
  if (maxNorm > 0 && norm > maxNorm) {
    const f = maxNorm / (norm + 1e-6);
    for (const [n, g] of grads) { grads.set(n, tf.mul(g, f)); g.dispose(); }
  }
  return norm;
}
