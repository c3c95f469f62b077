// Pictures of what the current global model does on this site's own validation objects: the image, the ground
// truth outlined in green, the prediction filled in blue and the box prompt in yellow. They stay on the site (its
// own dashboard); nothing here goes to the server.
import { encodePngRGB, overlayMask, type RGBImage } from '@fedsam/shared/image';
import type { Box } from '../data/types.ts';

export interface Overlay {
  /** Position in the site's validation split. */
  index: number;
  id: string;
  round: number;
  dice: number;
  png: Buffer;
}

const GREEN: [number, number, number] = [0, 200, 0];
const BLUE: [number, number, number] = [30, 144, 255];
const YELLOW: [number, number, number] = [255, 200, 0];

/** Draw the box outline (2 px) into an RGB buffer in place. */
export function drawBox(data: Uint8Array, width: number, height: number, box: Box, colour = YELLOW, thickness = 2): void {
  const [x0, y0, x1, y1] = box.map(Math.round) as Box;
  const put = (x: number, y: number) => {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    const i = 3 * (y * width + x);
    data[i] = colour[0];
    data[i + 1] = colour[1];
    data[i + 2] = colour[2];
  };
  for (let t = 0; t < thickness; t++) {
    for (let x = x0; x <= x1; x++) { put(x, y0 + t); put(x, y1 - t); }
    for (let y = y0; y <= y1; y++) { put(x0 + t, y); put(x1 - t, y); }
  }
}

export function diceOf(pred: Uint8Array, truth: Uint8Array): number {
  let inter = 0, a = 0, b = 0;
  for (let i = 0; i < pred.length; i++) {
    const p = pred[i] ? 1 : 0, t = truth[i] ? 1 : 0;
    inter += p & t;
    a += p;
    b += t;
  }
  return a + b === 0 ? 1 : (2 * inter) / (a + b);
}

/** One overlay picture: prediction filled, ground truth outlined, box drawn. */
export async function renderOverlay(image: RGBImage, truth: Uint8Array, pred: Uint8Array, box: Box): Promise<Buffer> {
  const withPred = overlayMask(image, pred, { color: BLUE, alpha: 0.45, outlineColor: null });
  const withTruth = overlayMask({ ...image, data: withPred }, truth, { color: GREEN, alpha: 0, outlineColor: GREEN });
  drawBox(withTruth, image.width, image.height, box);
  return encodePngRGB({ ...image, data: withTruth });
}
