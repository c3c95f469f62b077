// The pretraining corpus as a SampleSource: procedurally generated images with exact object masks, broad enough
// (14 shape families, 9 appearance regimes, textures of several spectra, 1-8 objects with decoys, sizes from a few
// pixels to most of the image, both polarities, strong to faint contrast) that an encoder learns general features.
// `fedsam pretrain` draws the TRAIN split; evaluation draws the HELD-OUT split (corpus/families.ts), with another seed.
import type { PretrainSample, SampleRng, SampleSource } from './sample.ts';
import { CORPUS_SPLITS, REGIMES, SHAPE_FAMILIES, type CorpusSplit } from './corpus/families.ts';
import { composeScene } from './corpus/scene.ts';
import { pick } from './corpus/random.ts';

export { CORPUS_SPLITS, type CorpusSplit };

export interface CorpusOptions {
  /** Shape families and regimes of this split (default train). */
  split?: CorpusSplit;
  /** Override the split for the shape families only (e.g. held-out shapes in train regimes). */
  families?: CorpusSplit;
  /** Override the split for the appearance regimes only. */
  regimes?: CorpusSplit;
  /** Longer image side in pixels (default 256). */
  size?: number;
  /** Only square images (default: a quarter of the images have the shorter side at 60-100% of the longer). */
  square?: boolean;
  /** Easy scenes first (scene.ts `easy`), see Curriculum. */
  curriculum?: Curriculum;
}

/**
 * Sample i is an easy scene with probability max(floor, 1 − i/rampSamples): from scratch, a model learns almost
 * nothing on the full corpus in its first thousands of images (Dice ≈ 0.03 after 250 steps of 8) while it learns
 * on large, well-contrasted objects at once; the floor keeps some easy scenes to the end.
 */
export interface Curriculum { rampSamples: number; floor: number }

/** Probability that sample `index` is an easy scene. */
export function easyShare(c: Curriculum | undefined, index: number): number {
  if (!c || c.rampSamples <= 0) return 0;
  return Math.max(c.floor, 1 - index / c.rampSamples);
}

/** A corpus sample source. Pure: the sample depends only on the rng's seed (the loop forks one per index). */
export function corpusSource(o: CorpusOptions = {}): SampleSource {
  const families = SHAPE_FAMILIES[o.families ?? o.split ?? 'train'];
  const regimes = REGIMES[o.regimes ?? o.split ?? 'train'];
  const size = o.size ?? 256;
  if (!(Number.isInteger(size) && size >= 32)) throw new RangeError(`corpus size must be an integer >= 32, got ${size}`);
  return (index: number, rng: SampleRng): PretrainSample => {
    const layout = rng.fork('layout');
    let width = size, height = size;
    if (!o.square && layout.bool(0.25)) {
      const short = Math.round(size * layout.float(0.6, 1));
      if (layout.bool()) width = short;
      else height = short;
    }
    const regime = pick(layout, regimes);
    const easy = o.curriculum ? rng.fork('curriculum').next() < easyShare(o.curriculum, index) : false;
    const scene = composeScene({ width, height, families, regime, easy }, rng.fork('scene'));
    return {
      image: scene.image, width, height, masks: scene.masks,
      tags: [`regime:${regime.name}`, ...scene.families.map((f) => `object:${f}`), `decoys:${scene.decoys}`, ...(easy ? ['easy'] : [])],
    };
  };
}

/** A corpus sample's regime and the shape family of each mask (in mask order), read back from its tags. */
export function corpusTags(tags: readonly string[] | undefined): { regime: string; families: string[] } {
  const t = tags ?? [];
  return {
    regime: t.find((x) => x.startsWith('regime:'))?.slice('regime:'.length) ?? '?',
    families: t.filter((x) => x.startsWith('object:')).map((x) => x.slice('object:'.length)),
  };
}

/** What `fedsam pretrain` trains on: the TRAIN split at 256 px. */
export const pretrainCorpus: SampleSource = corpusSource({ split: 'train' });

/** For evaluation only: held-out shape families in held-out regimes. */
export const heldoutCorpus: SampleSource = corpusSource({ split: 'heldout' });
