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
import { boxCropFactor, modelBoxCrop, boxCropRect, cropImage, uncropMask, type BoxCrop, type CropRect } from '@fedsam/shared/boxCrop';

export interface PredictOptions {
  model?: string;
  image: string;
  box: number[];
  point?: number[][];
  out: string;
  overlay?: string;
  multimask?: boolean;
  /** Segment in a crop of this many box sides around the box (shared/src/boxCrop.ts); default: the model folder's. */
  boxCrop?: BoxCrop;
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

export async function predict(o: PredictOptions): Promise<{ iou: number; pixels: number; width: number; height: number; crop?: CropRect }> {
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
    // with --box-crop the model sees a square around the box (and the points), and the mask is pasted back
    const bounds = [o.box, ...(o.point ?? []).map((p) => [p[0], p[1], p[0], p[1]])];
    const factor = boxCropFactor(o.boxCrop ?? modelBoxCrop(loaded.processor.config));
    const crop: CropRect | undefined = factor === undefined ? undefined : boxCropRect(
      [Math.min(...bounds.map((b) => b[0])), Math.min(...bounds.map((b) => b[1])), Math.max(...bounds.map((b) => b[2])), Math.max(...bounds.map((b) => b[3]))].map(Math.floor),
      W, H, loaded.processor.longestEdge, factor);
    const dx = crop?.x ?? 0, dy = crop?.y ?? 0;
    const input = crop ? loaded.processor.preprocessRGB(cropImage(pre.image, crop)) : pre;
    const emb = await inference.embed({ data: input.pixelValues, shape: input.shape });
    const box = rescaleBoxes([[x0 - dx, y0 - dy, x1 - dx, y1 - dy]], input.originalSize, input.reshapedInputSize)[0]!;
    const pts = o.point?.length ? rescalePoints(o.point.map((p) => [p[0] - dx, p[1] - dy]), input.originalSize, input.reshapedInputSize) : undefined;
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
    const inInput = postProcessMask(low, [L, L], input.originalSize, input.reshapedInputSize, loaded.processor.config.pad_size);
    const full = crop ? uncropMask(inInput, crop, W, H, -Infinity) : inInput; // nothing outside the crop
    let pixels = 0;
    for (let i = 0; i < full.length; i++) if (full[i] > 0) pixels++;
    await writeMaskPng(o.out, full, W, H);
    if (o.overlay) await writeOverlayPng(o.overlay, pre.image, full, { box: o.box }); // the prompt box in yellow
    return { iou, pixels, width: W, height: H, crop };
  } finally {
    await loaded.close();
  }
}
