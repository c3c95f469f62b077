// transformers.js SAM folders (as Xenova/sam-vit-base publishes them): config.json, preprocessor_config.json and
// onnx/vision_encoder[_quantized].onnx + onnx/prompt_encoder_mask_decoder[_quantized].onnx, for inference only (the
// weights live inside the ONNX files, so such a folder cannot be fine-tuned here). Their I/O, from transformers.js's
// SamModel: the encoder maps pixel_values [B, 3, 1024, 1024] to image_embeddings [B, 256, 64, 64] and
// image_positional_embeddings [B, 256, 64, 64]; the decoder takes both plus input_points [B, pb, N, 2] and
// input_labels [B, pb, N] (int64), and input_boxes [B, pb, 4] where the export has it, and always returns the three
// multimask outputs: iou_scores [B, pb, 3], pred_masks [B, pb, 3, 256, 256].
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseSamConfig, type SamConfig } from '../config.ts';
import type { DecodeInputs, DecodeResult, HostArray, SamInference } from '../inference.ts';
import type { SamProcessor } from '../processor.ts';
import { processorFor } from '../model/presets.ts';
import { logger } from '../log.ts';
import { createSession, f32, i64, loadOrt, type OrtSession, type OrtTensor } from './runtime.ts';

/** File stems in the folder's onnx/ subfolder, in order of preference (full precision first). */
const VARIANTS = ['', '_fp32', '_quantized', '_int8', '_uint8', '_q8'];

export interface TransformersJsFiles { encoder: string; decoder: string; variant: string }

/** The encoder/decoder pair of a transformers.js SAM folder, or undefined when the folder is not one. */
export async function transformersJsFiles(dir: string, variant = process.env.FEDSAM_ONNX_VARIANT): Promise<TransformersJsFiles | undefined> {
  let names: string[];
  try {
    names = await readdir(join(dir, 'onnx'));
  } catch {
    return undefined;
  }
  const order = variant !== undefined ? [variant ? `_${variant.replace(/^_/, '')}` : ''] : VARIANTS;
  for (const v of order) {
    if (names.includes(`vision_encoder${v}.onnx`) && names.includes(`prompt_encoder_mask_decoder${v}.onnx`)) {
      return { encoder: join(dir, 'onnx', `vision_encoder${v}.onnx`), decoder: join(dir, 'onnx', `prompt_encoder_mask_decoder${v}.onnx`), variant: v.replace(/^_/, '') || 'fp32' };
    }
  }
  if (variant !== undefined) throw new Error(`${dir}/onnx has no vision_encoder${variant ? '_' + variant : ''}.onnx + prompt_encoder_mask_decoder${variant ? '_' + variant : ''}.onnx (FEDSAM_ONNX_VARIANT=${variant})`);
  return undefined;
}

/** NCHW <-> NHWC on the host. */
function toNHWC(data: Float32Array, [B, C, h, w]: readonly number[]): Float32Array {
  const out = new Float32Array(data.length);
  for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) for (let p = 0; p < h * w; p++) out[(b * h * w + p) * C + c] = data[(b * C + c) * h * w + p];
  return out;
}
function toNCHW(data: Float32Array, [B, h, w, C]: readonly number[]): Float32Array {
  const out = new Float32Array(data.length);
  for (let b = 0; b < B; b++) for (let p = 0; p < h * w; p++) for (let c = 0; c < C; c++) out[(b * C + c) * h * w + p] = data[(b * h * w + p) * C + c];
  return out;
}

export class TransformersJsSam implements SamInference {
  readonly engine = 'onnx' as const;
  private positional?: { data: Float32Array; dims: number[] };
  private warned = false;
  private readonly log = logger('onnx');

  private constructor(readonly files: TransformersJsFiles, private readonly imageSize: number, private readonly encoder: OrtSession, private readonly decoder: OrtSession) {}

  static async open(files: TransformersJsFiles, imageSize: number): Promise<TransformersJsSam> {
    const encoder = await createSession(files.encoder, `the transformers.js vision encoder ${files.encoder}`);
    const decoder = await createSession(files.decoder, `the transformers.js prompt encoder + mask decoder ${files.decoder}`);
    for (const [s, file, need] of [[encoder, files.encoder, ['pixel_values']], [decoder, files.decoder, ['image_embeddings', 'image_positional_embeddings', 'input_points', 'input_labels']]] as const) {
      const missing = need.filter((n) => !s.inputNames.includes(n));
      if (missing.length) throw new Error(`${file} is not a transformers.js SAM export: it has no input ${missing.join(', ')} (inputs: ${s.inputNames.join(', ')})`);
    }
    return new TransformersJsSam(files, imageSize, encoder, decoder);
  }

  /** Whether the decoder export takes boxes (newer exports do; Xenova/sam-vit-base's original one takes points only). */
  get acceptsBoxes(): boolean {
    return this.decoder.inputNames.includes('input_boxes');
  }

  private labelsType(): 'int64' | 'float32' {
    const meta = (this.decoder as unknown as { inputMetadata?: { name: string; type?: string }[] }).inputMetadata;
    const t = meta?.find((m) => m.name === 'input_labels')?.type;
    return t === 'float32' ? 'float32' : 'int64';
  }

  async embed(pixelValues: HostArray): Promise<HostArray> {
    const r = await this.encoder.run({ pixel_values: f32(pixelValues.data, pixelValues.shape) });
    const e = r.image_embeddings;
    if (!e) throw new Error(`${this.files.encoder} returned no image_embeddings (outputs: ${Object.keys(r).join(', ')})`);
    const pe = r.image_positional_embeddings;
    if (pe && !this.positional) this.positional = { data: (pe.data as Float32Array).slice(0, (pe.data as Float32Array).length / pe.dims[0]), dims: [1, ...pe.dims.slice(1)] };
    const [B, C, h, w] = e.dims;
    return { data: toNHWC(e.data as Float32Array, e.dims), shape: [B, h, w, C] };
  }

  async decode(inp: DecodeInputs): Promise<DecodeResult> {
    const [B, h, w, C] = inp.embeddingsNHWC.shape;
    if (!this.positional) {
      // the positional embeddings do not depend on the image: one encoder run on zeros gives them
      const S = this.imageSize;
      await this.embed({ data: new Float32Array(3 * S * S), shape: [1, 3, S, S] });
    }
    if (inp.inputMasks) throw new Error('this transformers.js decoder export takes no mask prompt (input_masks)');
    if (inp.inputBoxes && !this.acceptsBoxes) throw new Error(`${this.files.decoder} takes no input_boxes (an older transformers.js export): prompt with points, or use an HF SamModel folder`);
    const feeds: Record<string, OrtTensor> = {
      image_embeddings: f32(toNCHW(inp.embeddingsNHWC.data, inp.embeddingsNHWC.shape), [B, C, h, w]),
    };
    const pe = this.positional!;
    const peB = new Float32Array(B * pe.data.length);
    for (let b = 0; b < B; b++) peB.set(pe.data, b * pe.data.length);
    feeds.image_positional_embeddings = f32(peB, [B, ...pe.dims.slice(1)]);
    const pb = (inp.inputPoints ?? inp.inputBoxes)?.shape[1] ?? 1;
    if (inp.inputPoints && inp.inputLabels) {
      feeds.input_points = f32(inp.inputPoints.data, inp.inputPoints.shape);
      feeds.input_labels = this.labelsType() === 'int64' ? i64(inp.inputLabels.data, inp.inputLabels.shape)
        : f32(Float32Array.from(inp.inputLabels.data), inp.inputLabels.shape);
    } else {
      // the export always takes points: one padding point (label -10, HF's "ignore") per prompt
      feeds.input_points = f32(new Float32Array(B * pb * 2).fill(-10), [B, pb, 1, 2]);
      feeds.input_labels = this.labelsType() === 'int64' ? i64(new Array(B * pb).fill(-10), [B, pb, 1]) : f32(new Float32Array(B * pb).fill(-10), [B, pb, 1]);
    }
    if (inp.inputBoxes) feeds.input_boxes = f32(inp.inputBoxes.data, inp.inputBoxes.shape);
    const r = await this.decoder.run(feeds);
    const masks = r.pred_masks, iou = r.iou_scores;
    const k = masks.dims[2];
    if (inp.multimask || k === 1) {
      return { predMasks: { data: masks.data as Float32Array, shape: [...masks.dims] }, iouScores: { data: iou.data as Float32Array, shape: [...iou.dims] } };
    }
    // single-mask output asked from an export that returns only the multimask outputs: keep the best-scored one
    if (!this.warned) {
      this.warned = true;
      this.log.warn({ file: this.files.decoder }, 'this transformers.js decoder returns the 3 multimask outputs only; using the one with the highest predicted IoU');
    }
    const plane = masks.dims[3] * masks.dims[4];
    const n = masks.dims[0] * masks.dims[1];
    const out = new Float32Array(n * plane);
    const scores = new Float32Array(n);
    const md = masks.data as Float32Array, id = iou.data as Float32Array;
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let j = 1; j < k; j++) if (id[i * k + j] > id[i * k + best]) best = j;
      out.set(md.subarray((i * k + best) * plane, (i * k + best + 1) * plane), i * plane);
      scores[i] = id[i * k + best];
    }
    return { predMasks: { data: out, shape: [masks.dims[0], masks.dims[1], 1, masks.dims[3], masks.dims[4]] }, iouScores: { data: scores, shape: [masks.dims[0], masks.dims[1], 1] } };
  }

  async promptEmbeddings(): Promise<{ sparse?: HostArray; dense: HostArray }> {
    throw new Error('a transformers.js export does not expose the prompt encoder\'s embeddings');
  }

  async dispose(): Promise<void> {
    await Promise.all([this.encoder.release(), this.decoder.release()]);
  }
}

export interface TransformersJsModel { source: string; config: SamConfig; processor: SamProcessor; inference: TransformersJsSam }

/** Open a transformers.js SAM folder for inference (needs ONNX Runtime; the folder's config.json gives the sizes). */
export async function loadTransformersJsModel(dir: string): Promise<TransformersJsModel> {
  const folder = resolve(dir);
  const files = await transformersJsFiles(folder);
  if (!files) throw new Error(`${folder} has no onnx/vision_encoder.onnx + onnx/prompt_encoder_mask_decoder.onnx`);
  const { error } = loadOrt();
  if (error) throw new Error(`${folder} is a transformers.js (ONNX) model folder, which needs ONNX Runtime: ${error}`);
  let config: SamConfig;
  try {
    config = parseSamConfig(JSON.parse(await readFile(join(folder, 'config.json'), 'utf8')), join(folder, 'config.json'));
  } catch (e) {
    throw new Error(`${folder}/config.json: ${(e as Error).message}`);
  }
  const processor = await processorFor(config, folder);
  const inference = await TransformersJsSam.open(files, config.vision.image_size);
  logger('onnx').info({ folder, variant: files.variant, boxes: inference.acceptsBoxes }, 'transformers.js SAM folder');
  return { source: folder, config, processor, inference };
}
