// What `fedsam predict` runs: one image, a box (and optional points) -> binary mask PNG at the image's size, an
// overlay, and the predicted IoU.
import { loadModel } from '@fedsam/shared/model/presets';
import { rescaleBoxes, rescalePoints, postProcessMask } from '@fedsam/shared/processor';
import { inferenceFor, releaseInference } from '@fedsam/shared/samInference';
import { transformersJsFiles, loadTransformersJsModel } from '@fedsam/shared/onnx/transformersJs';
import { pathExists } from '@fedsam/shared/fsutil';
import type { SamInference } from '@fedsam/shared/inference';
import type { SamConfig } from '@fedsam/shared/config';
import type { SamProcessor } from '@fedsam/shared/processor';
import { join } from 'node:path';
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

/** The model to predict with: an HF SamModel folder (or the built-in model) on the chosen engine, or a transformers.js ONNX folder. */
async function openModel(spec?: string): Promise<{ config: SamConfig; processor: SamProcessor; inference: SamInference; close: () => Promise<void> }> {
  if (spec && !(await pathExists(join(spec, 'model.safetensors'))) && !(await pathExists(join(spec, 'model.safetensors.index.json'))) && await transformersJsFiles(spec)) {
    const m = await loadTransformersJsModel(spec);
    return { ...m, close: () => m.inference.dispose() };
  }
  const loaded = await loadModel(spec);
  return {
    config: loaded.config, processor: loaded.processor, inference: inferenceFor(loaded),
    close: async () => { await releaseInference(loaded.model); loaded.model.dispose(); },
  };
}

export async function predict(o: PredictOptions): Promise<{ iou: number; pixels: number; width: number; height: number }> {
  const loaded = await openModel(o.model);
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
    const inference = loaded.inference;
    const emb = await inference.embed({ data: pre.pixelValues, shape: pre.shape });
    const box = rescaleBoxes([o.box], pre.originalSize, pre.reshapedInputSize)[0]!;
    const pts = o.point?.length ? rescalePoints(o.point.map((p) => [p[0], p[1]]), pre.originalSize, pre.reshapedInputSize) : undefined;
    const out = await inference.decode({
      embeddingsNHWC: emb,
      inputBoxes: { data: Float32Array.from(box), shape: [1, 1, 4] },
      inputPoints: pts ? { data: Float32Array.from(pts.flat()), shape: [1, 1, pts.length, 2] } : undefined,
      inputLabels: pts ? { data: Int32Array.from(o.point!.map((p) => p[2])), shape: [1, 1, pts.length] } : undefined,
      multimask,
    });
    const ious = out.iouScores.data;
    let best = 0;
    for (let i = 1; i < ious.length; i++) if (ious[i] > ious[best]) best = i;
    const low = out.predMasks.data.slice(best * L * L, (best + 1) * L * L);
    const iou = ious[best];
    const full = postProcessMask(low, [L, L], pre.originalSize, pre.reshapedInputSize, loaded.processor.config.pad_size);
    let pixels = 0;
    for (let i = 0; i < full.length; i++) if (full[i] > 0) pixels++;
    await writeMaskPng(o.out, full, W, H);
    if (o.overlay) await writeOverlayPng(o.overlay, pre.image, full, { box: o.box }); // the prompt box in yellow
    return { iou, pixels, width: W, height: H };
  } finally {
    await loaded.close();
  }
}
