// MONAI DiceCELoss(sigmoid=True, squared_pred=True, reduction='mean') for single-channel logits, as the
// reference recipe uses it. With one channel MONAI's CE term is BCEWithLogits; lambda_dice = lambda_ce = 1.
//   L = mean_{b,c}[1 - (2 Σ p·t + 1e-5) / (Σ t² + Σ p² + 1e-5)] + mean_{b,c,h,w}[max(x,0) - x·t + log(1 + e^{-|x|})]
import * as tf from '@tensorflow/tfjs';

const SMOOTH = 1e-5;

export interface DiceCEParts { loss: tf.Scalar; dice: tf.Scalar; bce: tf.Scalar }

/** logits and target [B, C, H, W] (any rank ≥ 3: the last two axes are spatial). */
export function diceCELossParts(logits: tf.Tensor, target: tf.Tensor): DiceCEParts {
  return tf.tidy(() => {
    const spatial = [logits.rank - 2, logits.rank - 1];
    const p = tf.sigmoid(logits);
    const inter = tf.sum(tf.mul(p, target), spatial);
    const denom = tf.add(tf.sum(tf.square(target), spatial), tf.sum(tf.square(p), spatial));
    const dice = tf.mean(tf.sub(1, tf.div(tf.add(tf.mul(inter, 2), SMOOTH), tf.add(denom, SMOOTH)))) as tf.Scalar;
    const bceEl = tf.add(tf.sub(tf.relu(logits), tf.mul(logits, target)), tf.softplus(tf.neg(tf.abs(logits))));
    const bce = tf.mean(bceEl) as tf.Scalar;
    return { loss: tf.add(dice, bce) as tf.Scalar, dice, bce };
  });
}

export function diceCELoss(logits: tf.Tensor, target: tf.Tensor): tf.Scalar {
  return tf.tidy(() => diceCELossParts(logits, target).loss);
}
