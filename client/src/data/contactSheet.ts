// A contact sheet of corpus samples: a grid of tiles, each the image with every object's outline in its own colour
// (docs/corpus.png; `fedsam synth --generator corpus --contact-sheet FILE`).
import sharp from 'sharp';
import type { PretrainSample } from '@fedsam/shared/pretrain/sample';

const PALETTE: [number, number, number][] = [[255, 60, 60], [60, 220, 60], [70, 130, 255], [255, 210, 0], [255, 0, 255], [0, 230, 230], [255, 140, 0], [180, 100, 255]];

/** Draw the inner boundary of each mask over a copy of the image. */
export function outlineObjects(s: PretrainSample): Uint8Array {
  const { width: w, height: h } = s;
  const out = new Uint8Array(s.image);
  s.masks.forEach((m, k) => {
    const col = PALETTE[k % PALETTE.length]!;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = y * w + x;
        if (!m[i]) continue;
        if (x === 0 || x === w - 1 || y === 0 || y === h - 1 || !m[i - 1] || !m[i + 1] || !m[i - w] || !m[i + w]) {
          out[3 * i] = col[0];
          out[3 * i + 1] = col[1];
          out[3 * i + 2] = col[2];
        }
      }
    }
  });
  return out;
}

/**
 * Write a PNG grid: each sample twice side by side (as generated | with object outlines), `columns` pairs per row,
 * tiles of `tile` px (images are letterboxed into the tile on black).
 */
export async function writeContactSheet(file: string, samples: readonly PretrainSample[], o: { columns?: number; tile?: number } = {}): Promise<void> {
  const columns = o.columns ?? 4, tile = o.tile ?? 160, gap = 4;
  const rows = Math.ceil(samples.length / columns);
  const pair = 2 * tile + 2; // image | outlines, 2 px apart
  const W = columns * pair + (columns + 1) * gap, H = rows * tile + (rows + 1) * gap;
  const composites: sharp.OverlayOptions[] = [];
  for (let k = 0; k < samples.length; k++) {
    const s = samples[k]!;
    const col = k % columns, row = Math.floor(k / columns);
    const left = gap + col * (pair + gap), top = gap + row * (tile + gap);
    for (const [j, data] of [[0, s.image], [1, outlineObjects(s)]] as const) {
      const png = await sharp(Buffer.from(data.buffer, data.byteOffset, data.length), { raw: { width: s.width, height: s.height, channels: 3 } })
        .resize(tile, tile, { fit: 'contain', background: { r: 0, g: 0, b: 0 }, kernel: 'nearest' })
        .png().toBuffer();
      composites.push({ input: png, left: left + j * (tile + 2), top });
    }
  }
  await sharp({ create: { width: W, height: H, channels: 3, background: { r: 40, g: 40, b: 40 } } }).composite(composites).png({ palette: true, quality: 90, effort: 4 }).toFile(file); // quantized: noise does not compress
}
