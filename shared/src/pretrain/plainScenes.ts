// The simplest promptable-segmentation task: two or three bright squares or discs of 24-80 px on dark noise, never
// touching. Every object is equally salient, so the only way past Dice ≈ 1/objects ("segment everything") is to use
// the prompt. A diagnostic corpus (`fedsam pretrain --corpus plain`): it shows whether a model and recipe learn to
// select the prompted object at all, in minutes, before the full corpus is blamed.
import type { PretrainSample, SampleRng, SampleSource } from './sample.ts';

const SIZE = 256;
/** Object side range in pixels, and the free margin kept between objects. */
const SIDE: [number, number] = [24, 80];
const GAP = 8;

export const plainScenes: SampleSource = (_index: number, rng: SampleRng): PretrainSample => {
  const image = new Uint8Array(SIZE * SIZE * 3);
  const set = (k: number, v: number) => { image[3 * k] = image[3 * k + 1] = image[3 * k + 2] = v; };
  for (let k = 0; k < SIZE * SIZE; k++) set(k, 40 + rng.int(0, 30));
  const want = rng.int(2, 3);
  const placed: { x: number; y: number; s: number }[] = [];
  const masks: Uint8Array[] = [];
  for (let attempt = 0; attempt < 50 && masks.length < want; attempt++) {
    const s = rng.int(SIDE[0], SIDE[1]), x = rng.int(0, SIZE - s), y = rng.int(0, SIZE - s);
    if (placed.some((p) => x < p.x + p.s + GAP && p.x < x + s + GAP && y < p.y + p.s + GAP && p.y < y + s + GAP)) continue;
    placed.push({ x, y, s });
    const disc = rng.bool();
    const m = new Uint8Array(SIZE * SIZE);
    for (let yy = y; yy < y + s; yy++) {
      for (let xx = x; xx < x + s; xx++) {
        if (disc && (xx - x - s / 2) ** 2 + (yy - y - s / 2) ** 2 > (s / 2) ** 2) continue;
        m[yy * SIZE + xx] = 1;
        set(yy * SIZE + xx, 200 + rng.int(0, 30));
      }
    }
    masks.push(m);
  }
  return { image, width: SIZE, height: SIZE, masks, tags: ['plain'] };
};
