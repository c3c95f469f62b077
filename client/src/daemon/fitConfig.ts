// A FitTask's wire config -> the engine's FitConfig. Fields an older server leaves empty take the meaning they had
// then; a value no release sends (a malformed box_jitter) is refused, so the site abandons the task with a reason
// instead of training with something it guessed.
import { DITTO_LAMBDA_PARAM, SCAFFOLD_PARAM, type WireFitConfig } from '@fedsam/shared/transfer/messages';
import { SAM_FINETUNE_LR } from '@fedsam/shared/train/lr';
import { boxJitterFromWire } from '@fedsam/shared/train/boxJitter';
import type { FitConfig } from '../engine/localEngine.ts';

export class InvalidFitConfigError extends Error {
  constructor(readonly field: string, detail: string) {
    super(`FitConfig.${field}: ${detail}`);
    this.name = 'InvalidFitConfigError';
  }
}

export function fitConfigFromWire(wc: WireFitConfig | null | undefined, round: number): FitConfig {
  let boxJitter;
  try {
    boxJitter = boxJitterFromWire(wc?.box_jitter);
  } catch (e) {
    throw new InvalidFitConfigError('box_jitter', (e as Error).message);
  }
  const dittoLambda = wc?.params?.[DITTO_LAMBDA_PARAM];
  return {
    epochs: wc?.epochs ?? 1, lr: wc?.lr || SAM_FINETUNE_LR, batchSize: wc?.batch_size ?? 1, proximalMu: wc?.proximal_mu ?? 0, seed: wc?.seed ?? 0, round,
    ...(wc?.points_positive || wc?.points_negative ? { points: { positive: wc.points_positive ?? 0, negative: wc.points_negative ?? 0 } } : {}),
    optimizerState: wc?.optimizer_state === 'keep' ? 'keep' : 'fresh', warmupSteps: wc?.warmup_steps ?? 0,
    boxJitter,
    ...((wc?.params?.[SCAFFOLD_PARAM] ?? 0) > 0 ? { scaffold: true } : {}),
    ...(dittoLambda !== undefined && Number.isFinite(dittoLambda) && dittoLambda >= 0 ? { ditto: { lambda: dittoLambda } } : {}),
  };
}
