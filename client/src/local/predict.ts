// What `fedsam predict` runs: one image, a box (and optional points) -> binary mask PNG at the image's size, an
// overlay, and the predicted IoU.
import * as tf from '@tensorflow/tfjs';
import { loadModel } from '@fedsam/shared/model/presets';
import { pixelValuesTensor, rescaleBoxes, rescalePoints, postProcessMask } from '@fedsam/shared/processor';
import { writeMaskPng, writeOverlayPng } from '@fedsam/shared/image';

export interface PredictOptions {
  model?: string;
  image: string;
  box: number[];
  point?: number[][];
  out: string;
  overlay?: string;
  multimask?: boolean;
}

export async function predict(o: PredictOptions): Promise<{ iou: number; pixels: number; width: number; height: number }> {
  const loaded = await loadModel(o.model);
  try {
    const pre = await loaded.processor.preprocess(o.image);
    const [H, W] = pre.originalSize;
    const [x0, y0, x1, y1] = o.box;
    if (!(x0 < x1 && y0 < y1)) throw new Error(`--box ${o.box.join(',')} is empty: it must be x0,y0,x1,y1 with x0 < x1 and y0 < y1`);
    if (x0 < 0 || y0 < 0 || x1 > W || y1 > H) throw new Error(`--box ${o.box.join(',')} lies outside the image (${W}x${H} pixels): coordinates must be within 0..${W} and 0..${H}`);
    for (const p of o.point ?? []) {
      if (p[0] < 0 || p[1] < 0 || p[0] > W || p[1] > H) throw new Error(`--point ${p.join(',')} lies outside the image (${W}x${H} pixels)`);
    }
    const multimask = !!o.multimask;
    const L = 4 * loaded.config.prompt.imageEmbeddingSize;
    const { low, iou } = tf.tidy(() => {
      const emb = loaded.model.imageEmbeddingsNHWC(pixelValuesTensor(pre));
      const boxes = tf.tensor3d([rescaleBoxes([o.box], pre.originalSize, pre.reshapedInputSize)]);
      const pts = o.point?.length ? tf.tensor4d([[rescalePoints(o.point.map((p) => [p[0], p[1]]), pre.originalSize, pre.reshapedInputSize)]]) : undefined;
      const labels = o.point?.length ? [[o.point.map((p) => p[2])]] : undefined;
      const out = loaded.model.decode(emb, { inputBoxes: boxes, inputPoints: pts, inputLabels: labels }, multimask);
      const ious = out.iouScores.dataSync();
      let best = 0;
      for (let i = 1; i < ious.length; i++) if (ious[i] > ious[best]) best = i;
      const masks = out.predMasks.dataSync() as Float32Array;
      return { low: masks.slice(best * L * L, (best + 1) * L * L), iou: ious[best] };
    }) as unknown as { low: Float32Array; iou: number };
    const full = postProcessMask(low, [L, L], pre.originalSize, pre.reshapedInputSize, loaded.processor.config.pad_size);
    let pixels = 0;
    for (let i = 0; i < full.length; i++) if (full[i] > 0) pixels++;
    await writeMaskPng(o.out, full, W, H);
    if (o.overlay) await writeOverlayPng(o.overlay, pre.image, full);
    return { iou, pixels, width: W, height: H };
  } finally {
    loaded.model.dispose();
  }
}
