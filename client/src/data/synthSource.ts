// The synthetic site generator (synth.ts) as a pretraining SampleSource: every sample gets its own non-IID style
// (intensity, polarity, texture, noise, shape mix). A stand-in corpus for tests and until the broad corpus lands;
// it is narrow (five shape kinds, gray), so a model pretrained only on it learns its look.
import type { SampleSource } from '@fedsam/shared/pretrain/sample';
import { Rng } from '@fedsam/shared/rng';
import { siteStyle, synthImage } from './synth.ts';

export function synthSampleSource(size = 256): SampleSource {
  return (index, rng) => {
    const r = rng as Rng;
    const style = siteStyle(r.fork('style'), index % 3, true);
    const { image, labels } = synthImage(size, style, r.fork('image'));
    const rgb = new Uint8Array(size * size * 3);
    for (let i = 0; i < image.length; i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = image[i]!;
    let k = 0;
    for (const l of labels) if (l > k) k = l;
    const masks = Array.from({ length: k }, (_, j) => labels.map((l) => (l === j + 1 ? 1 : 0)));
    return { image: rgb, height: size, width: size, masks, tags: ['synth'] };
  };
}
