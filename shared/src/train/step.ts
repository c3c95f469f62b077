// One fine-tuning step of the mask decoder (the HF recipe): frozen encoders, box prompts, multimask off,
// DiceCE on the low-res logits, Adam. Parameters are plain tensors passed as explicit inputs to the loss, so
// several models (one per simulated site) can live in one process without tf.Variable name clashes.
//
// Speed (tfjs-wasm): the DiceCE loss of a batch is the mean of the per-sample losses (Dice is averaged over
// (batch, channel), BCE over equally sized samples), so a batch runs sample by sample and the gradients are
// averaged — the decoder's fast path is 2-D (see model/maskDecoder.ts) and peak memory stays at one sample.
// The loss is taken in the decoder's blocked pixel order (target rearranged once; sums do not care about order),
// and the IoU head, which the loss does not use, is skipped.
import * as tf from '@tensorflow/tfjs';
import type { SamModel } from '../model/sam.ts';
import type { Weights } from '../model/ops.ts';
import { decodeOne, imageTokens, spatialToBlocked } from '../model/maskDecoder.ts';
import { DECODER_KEYS } from '../checkpoint/keys.ts';
import { diceCELossParts } from './loss.ts';
import { adamStep, type AdamOptions, type AdamState } from './adam.ts';

/** Mask-decoder parameters that receive a gradient when multimask_output=False (mask token 0 only). */
export function trainableDecoderNames(names: Iterable<string>, numMultimaskOutputs: number): string[] {
  const unused = (n: string) => n.startsWith(`${DECODER_KEYS.iouPredictionHeadPath}.`) ||
    Array.from({ length: numMultimaskOutputs }, (_, i) => `${DECODER_KEYS.hypernetworkMlpPath(i + 1)}.`).some((p) => n.startsWith(p));
  return [...names].filter((n) => n.startsWith('mask_decoder.') && !unused(n)).sort();
}

export interface TrainBatch {
  /** [B, h, w, C] cached image embeddings. */
  embeddingsNHWC: tf.Tensor4D;
  /** [B, 1, 4] boxes in the model-input frame. */
  boxes: tf.Tensor3D;
  /** [B, 1, H, W] 0/1 ground truth at the low-res mask size. */
  target: tf.Tensor4D;
  /** Optional point prompts with the box: [B, 1, N, 2] in the model-input frame, and labels [B][1][N] (1, 0, -10 padding). */
  points?: tf.Tensor4D;
  labels?: number[][][];
}

export interface StepResult { loss: number; dice: number; bce: number }

export interface ProximalTerm { mu: number; global: Map<string, tf.Tensor> }

/** Per-sample inputs of the decoder loss, prepared once per batch (frozen prompt encoder, rearranged targets). */
interface SampleInputs { image: tf.Tensor2D; sparse: tf.Tensor2D; target: tf.Tensor4D }

function prepareSamples(model: SamModel, batch: TrainBatch): { pos: tf.Tensor2D; samples: SampleInputs[] } {
  return tf.tidy(() => {
    const [B, h, w, C] = batch.embeddingsNHWC.shape;
    const N = h * w;
    const [, , H, W] = batch.target.shape;
    if (H !== 4 * h || W !== 4 * w) throw new Error(`target is ${H}x${W} but the decoder's masks are ${4 * h}x${4 * w}`);
    const { sparse, dense } = model.promptEncoder(B, { inputBoxes: batch.boxes, inputPoints: batch.points, inputLabels: batch.labels }); // [B, 1, n, C], [B, 1, 1, C] (or [B, h, w, C])
    const n = sparse.shape[2];
    const pos = tf.reshape(model.positionalEmbeddingsNHWC(), [N, C]) as tf.Tensor2D;
    const samples: SampleInputs[] = [];
    for (let b = 0; b < B; b++) {
      const one = <T extends tf.Tensor>(t: T): T => (B === 1 ? t : tf.slice(t, b, 1) as T);
      samples.push({
        image: imageTokens(batch.embeddingsNHWC, dense, b),
        sparse: tf.reshape(one(sparse), [n, C]) as tf.Tensor2D,
        target: tf.reshape(spatialToBlocked(one(batch.target), h, w), [1, 1, H, W]) as tf.Tensor4D,
      });
    }
    return { pos, samples } as any;
  }) as unknown as { pos: tf.Tensor2D; samples: SampleInputs[] };
}

/** Loss and gradients w.r.t. the named decoder parameters. The caller owns (and disposes) the returned grads. */
export function lossAndGrads(model: SamModel, batch: TrainBatch, names: string[], proximal?: ProximalTerm):
  { parts: { loss: tf.Scalar; dice: tf.Scalar; bce: tf.Scalar }; grads: Map<string, tf.Tensor> } {
  const w = model.weights;
  const xs = names.map((n) => w.get(n)!);
  const { pos, samples } = prepareSamples(model, batch);
  const B = samples.length;
  let sums: tf.Tensor[] | undefined; // Σ over samples of [loss, dice, bce, ...grads]
  try {
    for (const s of samples) {
      let dice: tf.Scalar | undefined;
      let bce: tf.Scalar | undefined;
      const f = (...ps: tf.Tensor[]) => {
        const local: Weights = new Map(w);
        names.forEach((n, i) => local.set(n, ps[i]));
        const out = decodeOne(local, model.config, { image: s.image, pos, sparse: s.sparse, selected: [0], iou: false });
        const parts = diceCELossParts(tf.reshape(out.logitsBlocked, s.target.shape), s.target);
        dice = tf.keep(parts.dice);
        bce = tf.keep(parts.bce);
        return parts.loss;
      };
      const { value, grads } = tf.valueAndGrads(f)(xs);
      const got = [value, dice!, bce!, ...grads];
      if (!sums) sums = got;
      else {
        const prev = sums;
        sums = prev.map((t, i) => tf.add(t, got[i]));
        tf.dispose([...prev, ...got]);
      }
    }
  } finally {
    tf.dispose([pos, ...samples.flatMap((s) => [s.image, s.sparse, s.target])]);
  }
  const total = B === 1 ? sums! : sums!.map((t) => { const m = tf.div(t, B); t.dispose(); return m; });
  let [loss, dice, bce] = total as tf.Scalar[];
  const gm = new Map<string, tf.Tensor>();
  names.forEach((n, i) => gm.set(n, total[3 + i]));
  if (proximal && proximal.mu > 0) {
    // FedProx: (mu/2)·||w - w_global||², gradient mu·(w - w_global)
    const [sq, ...extra] = tf.tidy(() => {
      let acc: tf.Tensor = tf.scalar(0);
      const gs = names.map((n, i) => {
        const diff = tf.sub(xs[i], proximal.global.get(n)!);
        acc = tf.add(acc, tf.sum(tf.square(diff)));
        return tf.add(gm.get(n)!, tf.mul(diff, proximal.mu));
      });
      return [tf.mul(acc, proximal.mu / 2), ...gs];
    });
    names.forEach((n, i) => { gm.get(n)!.dispose(); gm.set(n, extra[i]); });
    const l2 = tf.add(loss, sq) as tf.Scalar;
    tf.dispose([loss, sq]);
    loss = l2;
  }
  return { parts: { loss, dice, bce }, grads: gm };
}

/** Loss on a batch without gradients (validation, and the loss after the last step). */
export function batchLoss(model: SamModel, batch: TrainBatch): StepResult {
  return tf.tidy(() => {
    const out = model.decode(batch.embeddingsNHWC, { inputBoxes: batch.boxes }, false);
    const p = diceCELossParts(tf.squeeze(out.predMasks, [1]), batch.target);
    return { loss: p.loss.dataSync()[0], dice: p.dice.dataSync()[0], bce: p.bce.dataSync()[0] };
  }) as unknown as StepResult;
}

/** Forward, backward and an Adam update of the model's decoder weights in place. */
export function trainStep(model: SamModel, batch: TrainBatch, names: string[], adam: AdamState, opts: AdamOptions, proximal?: ProximalTerm): StepResult {
  const { parts, grads } = lossAndGrads(model, batch, names, proximal);
  const [loss, dice, bce] = [parts.loss.dataSync()[0], parts.dice.dataSync()[0], parts.bce.dataSync()[0]];
  tf.dispose([parts.loss, parts.dice, parts.bce]);
  adamStep(model.weights, grads, adam, opts);
  for (const g of grads.values()) g.dispose();
  // The cached positional embedding is unaffected (prompt encoder is frozen).
  return { loss, dice, bce };
}
