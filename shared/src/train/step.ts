// One fine-tuning step of the mask decoder (the HF recipe): frozen encoders, box prompts, multimask off,
// DiceCE on the low-res logits, Adam. Parameters are plain tensors passed as explicit inputs to the loss, so
// several models (one per simulated site) can live in one process without tf.Variable name clashes.
import * as tf from '@tensorflow/tfjs';
import type { SamModel } from '../model/sam.ts';
import type { Weights } from '../model/ops.ts';
import { diceCELossParts } from './loss.ts';
import { adamStep, type AdamOptions, type AdamState } from './adam.ts';

/** Mask-decoder parameters that receive a gradient when multimask_output=False (mask token 0 only). */
export function trainableDecoderNames(names: Iterable<string>, numMultimaskOutputs: number): string[] {
  const unused = (n: string) => n.startsWith('mask_decoder.iou_prediction_head.') ||
    Array.from({ length: numMultimaskOutputs }, (_, i) => `mask_decoder.output_hypernetworks_mlps.${i + 1}.`).some((p) => n.startsWith(p));
  return [...names].filter((n) => n.startsWith('mask_decoder.') && !unused(n)).sort();
}

export interface TrainBatch {
  /** [B, h, w, C] cached image embeddings. */
  embeddingsNHWC: tf.Tensor4D;
  /** [B, 1, 4] boxes in the model-input frame. */
  boxes: tf.Tensor3D;
  /** [B, 1, H, W] 0/1 ground truth at the low-res mask size. */
  target: tf.Tensor4D;
}

export interface StepResult { loss: number; dice: number; bce: number }

export interface ProximalTerm { mu: number; global: Map<string, tf.Tensor> }

/** Loss and gradients w.r.t. the named decoder parameters. The caller owns (and disposes) the returned grads. */
export function lossAndGrads(model: SamModel, batch: TrainBatch, names: string[], proximal?: ProximalTerm):
  { parts: { loss: tf.Scalar; dice: tf.Scalar; bce: tf.Scalar }; grads: Map<string, tf.Tensor> } {
  const w = model.weights;
  let dice: tf.Scalar | undefined;
  let bce: tf.Scalar | undefined;
  const f = (...xs: tf.Tensor[]) => {
    const local: Weights = new Map(w);
    names.forEach((n, i) => local.set(n, xs[i]));
    const out = model.decode(batch.embeddingsNHWC, { inputBoxes: batch.boxes }, false, local);
    const logits = tf.squeeze(out.predMasks, [1]); // [B, 1, H, W]
    const parts = diceCELossParts(logits, batch.target);
    dice = tf.keep(parts.dice.clone());
    bce = tf.keep(parts.bce.clone());
    let loss = parts.loss;
    if (proximal && proximal.mu > 0) {
      // FedProx: (mu/2)·||w - w_global||²
      let sq: tf.Tensor = tf.scalar(0);
      names.forEach((n, i) => { sq = tf.add(sq, tf.sum(tf.square(tf.sub(xs[i], proximal.global.get(n)!)))); });
      loss = tf.add(loss, tf.mul(sq, proximal.mu / 2)) as tf.Scalar;
    }
    return loss;
  };
  const xs = names.map((n) => w.get(n)!);
  const { value, grads } = tf.valueAndGrads(f)(xs);
  const gm = new Map<string, tf.Tensor>();
  names.forEach((n, i) => gm.set(n, grads[i]));
  return { parts: { loss: value as tf.Scalar, dice: dice!, bce: bce! }, grads: gm };
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
