// Plain scenes (plainScenes.ts) before and among another corpus's samples. A model from scratch learns to pick the
// prompted object on plain scenes in a few hundred steps and never on the full corpus; kept in the mix, the skill
// carries over (README, "Pretraining a small SAM").
import { plainScenes } from './plainScenes.ts';
import type { SampleSource } from './sample.ts';

export interface PlainMix {
  /** The first this many samples are plain scenes. */
  warmupSamples: number;
  /** After them, each sample is a plain scene with this probability. */
  share: number;
}

/** `source` with plain scenes first and mixed in. The source's own sample indices count from the end of the
 * warm-up, so its curriculum ramp starts where the plain warm-up ends. Pure, like every SampleSource. */
export function withPlainScenes(source: SampleSource, mix: PlainMix): SampleSource {
  if (!(mix.share >= 0 && mix.share <= 1)) throw new RangeError(`plain-scene share must be in [0, 1], got ${mix.share}`);
  return (index, rng) => (index < mix.warmupSamples || rng.fork('mix').next() < mix.share
    ? plainScenes(index, rng)
    : source(index - mix.warmupSamples, rng));
}
