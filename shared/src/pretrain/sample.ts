// The contract between the pretraining corpus (a generator of images with object masks) and the pretraining loop.
// The loop asks for sample `index` with a generator seeded for that index, so a sample depends only on (seed, index):
// runs are deterministic and a resumed run sees the same samples as an uninterrupted one.

/** The random draws a corpus may use: what `Rng` of @fedsam/shared/rng (re-exported by client/src/data/rng.ts) offers. */
export interface SampleRng {
  /** Uniform float in [0, 1). */
  next(): number;
  /** Uniform integer in [lo, hi], both inclusive. */
  int(lo: number, hi: number): number;
  /** Uniform float in [lo, hi). */
  float(lo: number, hi: number): number;
  /** Normal draw. */
  normal(mean?: number, std?: number): number;
  bool(p?: number): boolean;
  /** Independent stream derived from this generator's seed and a label. */
  fork(label: string | number): SampleRng;
}

/** One training image and its objects. */
export interface PretrainSample {
  /** RGB pixels, row-major height x width x 3 (gray images repeat the value in all three channels). */
  image: Uint8Array;
  height: number;
  width: number;
  /** One binary mask per object (height x width, 0 or 1), each a valid prompt target. May be empty (no object). */
  masks: Uint8Array[];
  /** Optional description for logs (e.g. shape family / appearance regime); not used for training. */
  tags?: string[];
}

/**
 * A corpus: sample `index` drawn with `rng` (the loop passes a generator forked for this index).
 * Must be pure: the same (index, rng seed) gives the same sample.
 */
export type SampleSource = (index: number, rng: SampleRng) => PretrainSample;

/** Throws a structured message when a sample breaks the contract (wrong buffer sizes, non-binary masks). */
export function checkSample(s: PretrainSample): void {
  const { height: h, width: w } = s;
  if (!(Number.isInteger(h) && Number.isInteger(w) && h > 0 && w > 0)) {
    throw new RangeError(`PretrainSample: height/width must be positive integers, got ${h}x${w}; fix the corpus generator`);
  }
  if (s.image.length !== h * w * 3) {
    throw new RangeError(`PretrainSample: image has ${s.image.length} bytes, expected ${h}*${w}*3 = ${h * w * 3} (RGB, HxWx3)`);
  }
  s.masks.forEach((m, k) => {
    if (m.length !== h * w) throw new RangeError(`PretrainSample: mask ${k} has ${m.length} bytes, expected ${h}*${w} = ${h * w} (HxW)`);
    for (let i = 0; i < m.length; i++) {
      if (m[i]! > 1) throw new RangeError(`PretrainSample: mask ${k} is not binary (value ${m[i]} at ${i}); use 0/1`);
    }
  });
}
