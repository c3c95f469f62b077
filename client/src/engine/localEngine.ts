// What the site daemon needs from a local training engine. SamEngine (samEngine.ts) and SiteWorkerEngine
// (siteWorkerEngine.ts) implement it; tests use a small deterministic engine (test/helpers/fake-engine.ts).
import type { HostTensor } from '@fedsam/shared/safetensors';
import { RECIPE_BOX_JITTER, type BoxJitter } from '@fedsam/shared/train/boxJitter';

/** One round's local training configuration, as sent by the server. */
export interface FitConfig {
  epochs: number;
  lr: number;
  batchSize: number;
  /** FedProx proximal term weight (0 = plain local SGD/Adam). */
  proximalMu: number;
  seed: number;
  round: number;
  /** Box-prompt noise (train/boxJitter.ts); absent: the recipe's 0–20 px outward, as an older server means it. */
  boxJitter?: BoxJitter;
  /** Point prompts per object besides the box (absent or 0 and 0: boxes only). */
  points?: { positive: number; negative: number };
  /** 'keep': continue the site's Adam state of earlier rounds (saved in its state folder); 'fresh' (default): a new Adam. */
  optimizerState?: OptimizerStateMode;
  /** Linear lr warm-up over the optimizer's first N steps (counted across rounds when the state is kept); 0 = none. */
  warmupSteps?: number;
  /** SCAFFOLD drift correction from the site's kept control variates (driftControl.ts); the server's strategy asks for it. */
  scaffold?: boolean;
  /** Ditto: after the global's fit, also train the site's personal model with the proximal weight λ toward the global. */
  ditto?: { lambda: number };
}

/** The round's box-prompt noise: a config without one (an older server) means the recipe's. */
export const boxJitterOf = (cfg: FitConfig): BoxJitter => cfg.boxJitter ?? RECIPE_BOX_JITTER;

export const OPTIMIZER_STATE_MODES = ['keep', 'fresh'] as const;
export type OptimizerStateMode = (typeof OPTIMIZER_STATE_MODES)[number];

/** Where a local fit stands (steps over all its epochs), for live views. */
export interface FitProgress {
  round: number;
  done: number;
  total: number;
  epoch: number;
  epochs: number;
  loss: number;
}

export interface FitResult {
  /** The new mask_decoder.* weights (float32, same names and shapes as decoderNames()). */
  weights: Map<string, HostTensor>;
  numExamples: number;
  metrics: Record<string, number>;
}

export interface EvaluateResult {
  numExamples: number;
  /** Must include dice and iou (the global's); personal_dice and personal_iou when the site has a personal model. */
  metrics: Record<string, number>;
}

export interface LocalEngine {
  /** Hash of the frozen encoders (vision_encoder + prompt_encoder + shared_image_embedding). */
  baseModelHash: string;
  /** mask_decoder.* names -> shapes. */
  decoderNames(): Map<string, number[]>;
  fit(global: Map<string, HostTensor>, cfg: FitConfig): Promise<FitResult>;
  evaluate(global: Map<string, HostTensor>): Promise<EvaluateResult>;
}
