// Colour jitter: a share of the samples gets a random affine colour transform, so that an encoder does not tie
// objects to the few colour schemes the corpus's regimes paint (most of them gray). Generic, as torchvision's
// ColorJitter and a channel shuffle are: the channels are permuted, mixed, scaled, shifted and some inverted; no
// colour map or stain model of any held-out regime is drawn. Masks are untouched.
import type { SampleRng, SampleSource } from './sample.ts';

/** A random 3×3 colour matrix and offset (pixel' = M·pixel + b, values 0..255). */
export function randomColourTransform(rng: SampleRng): { m: number[]; b: number[] } {
  const perm = [0, 1, 2];
  for (let i = 2; i > 0; i--) { const j = rng.int(0, i); [perm[i], perm[j]] = [perm[j]!, perm[i]!]; }
  const mix = rng.float(0, 0.7);
  const m: number[] = [], b: number[] = [];
  for (let r = 0; r < 3; r++) {
    const w = [rng.next(), rng.next(), rng.next()];
    const sum = w[0]! + w[1]! + w[2]!;
    const gain = rng.float(0.6, 1.4), invert = rng.bool(0.2) ? -1 : 1;
    for (let c = 0; c < 3; c++) m.push(invert * gain * ((1 - mix) * (perm[r] === c ? 1 : 0) + (mix * w[c]!) / sum));
    b.push((invert < 0 ? 255 : 0) + rng.float(-30, 30));
  }
  return { m, b };
}

/** `source` with each sample, with probability `share`, in randomly transformed colours. Pure. */
export function withColourJitter(source: SampleSource, share: number): SampleSource {
  if (!(share >= 0 && share <= 1)) throw new RangeError(`colour-jitter share must be in [0, 1], got ${share}`);
  return (index, rng) => {
    const sample = source(index, rng);
    const pick = rng.fork('colour');
    if (!(pick.next() < share)) return sample;
    const { m, b } = randomColourTransform(pick);
    const src = sample.image, image = new Uint8Array(src.length);
    for (let p = 0; p < src.length; p += 3) {
      const r = src[p]!, g = src[p + 1]!, bl = src[p + 2]!;
      for (let c = 0; c < 3; c++) {
        const v = m[3 * c]! * r + m[3 * c + 1]! * g + m[3 * c + 2]! * bl + b[c]!;
        image[p + c] = v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
      }
    }
    return { ...sample, image, tags: [...(sample.tags ?? []), 'colour-jitter'] };
  };
}
