// Learning-rate defaults, one place for every command, the server config and the site daemon.
/** The HF recipe's Adam lr for fine-tuning pretrained SAM weights (any downloaded SAM folder). */
export const SAM_FINETUNE_LR = 1e-5;
/** The built-in fedsam-tiny's own: a 0.4 M-parameter model pretrained for 4000 steps takes a far larger step than SAM's
 *  weights. 1e-3 holds on IID and non-IID sites alike; 3e-3 swings on non-IID ones, 3e-4 leaves federated behind
 *  (README, Results). */
export const TINY_MODEL_LR = 1e-3;

/**
 * The lr of Adam's step t (1-based) under a linear warm-up over its first `warmupSteps` steps: lr · min(1, t / N).
 * A fresh Adam's first bias-corrected steps move every weight by about lr whatever its gradient; the warm-up keeps
 * that jolt small. With a kept optimizer t runs on across rounds, so only the first round warms up.
 */
export function warmupLr(lr: number, t: number, warmupSteps: number): number {
  return warmupSteps > 0 ? lr * Math.min(1, t / warmupSteps) : lr;
}
