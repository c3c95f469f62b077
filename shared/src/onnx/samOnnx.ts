// The ONNX Runtime inference engine for a SAM model: the vision encoder graph (cached on disk, keyed by the vision
// weights' hash and the builder version) and one prompt encoder + mask decoder
// graph per prompt signature, built in memory from the current decoder weights (rebuilt when training replaced them).
import type { SamConfig } from '../config.ts';
import type { DecodeInputs, DecodeResult, HostArray, SamInference, WeightSource } from '../inference.ts';
import { decoderPrefixes } from '../inference.ts';
import { logger } from '../log.ts';
import { buildVisionGraph, VISION_INPUT, VISION_OUTPUT_NHWC } from './visionGraph.ts';
import { buildDecoderGraph, signatureKey, type DecoderSignature } from './decoderGraph.ts';
import { cachedGraphSession, defaultGraphCacheDir, graphKey } from './graphCache.ts';
import { createSession, f32, i64, type OrtSession } from './runtime.ts';

export interface OnnxSamOptions {
  config: SamConfig;
  weights: WeightSource;
  /** sha256 of the vision encoder weights (the graph cache key); without it the graph is built in memory. */
  visionHash?: string;
  /** Graph cache folder (default ~/.cache/fedsam/onnx or FEDSAM_ONNX_CACHE); null = never write graphs to disk. */
  cacheDir?: string | null;
  threads?: number;
  /** Run the vision encoder once on zeros when its session is created (default false: see runtime.ts). */
  warmUp?: boolean;
}

export class OnnxSamInference implements SamInference {
  readonly engine = 'onnx' as const;
  private vision?: Promise<OrtSession>;
  private decoders = new Map<string, Promise<OrtSession>>();
  private decoderVersion: readonly unknown[] = [];
  private readonly log = logger('onnx');
  /** Seconds spent creating (and warming up) the vision session, for benches. */
  visionSessionSeconds = 0;

  constructor(readonly o: OnnxSamOptions) {}

  /** The vision encoder session (built or read from the graph cache; warmed up only when asked). */
  visionSession(): Promise<OrtSession> {
    this.vision ??= this.openVision().catch((e) => { this.vision = undefined; throw e; });
    return this.vision;
  }

  private async openVision(): Promise<OrtSession> {
    const t0 = performance.now();
    const { config } = this.o;
    const build = () => buildVisionGraph(config, this.o.weights.host(['vision_encoder.']));
    let s: OrtSession;
    const dir = this.o.cacheDir === undefined ? defaultGraphCacheDir() : this.o.cacheDir;
    if (dir && this.o.visionHash) {
      s = await cachedGraphSession(dir, graphKey('vision', this.o.visionHash, { layout: 'nhwc' }), 'the vision encoder graph', build, {
        threads: this.o.threads,
        onEvent: (e) => (e.event === 'invalid' ? this.log.warn(e, 'cached ONNX graph unusable, rebuilding') : this.log.debug(e, 'ONNX graph cache')),
      });
    } else {
      s = await createSession(build().encode(), 'the vision encoder graph', { threads: this.o.threads });
    }
    if (this.o.warmUp) {
      const S = config.vision.image_size;
      await s.run({ [VISION_INPUT]: f32(new Float32Array(config.vision.num_channels * S * S), [1, config.vision.num_channels, S, S]) });
    }
    this.visionSessionSeconds = (performance.now() - t0) / 1000;
    return s;
  }

  async embed(pixelValues: HostArray): Promise<HostArray> {
    const s = await this.visionSession();
    const [B, ch, H, W] = pixelValues.shape;
    const v = this.o.config.vision;
    if (ch !== v.num_channels || H !== v.image_size || W !== v.image_size) {
      throw new Error(`pixel_values must be [B, ${v.num_channels}, ${v.image_size}, ${v.image_size}], got [${pixelValues.shape}]`);
    }
    const per = ch * H * W;
    const outs: HostArray[] = [];
    for (let b = 0; b < B; b++) {
      const r = await s.run({ [VISION_INPUT]: f32(pixelValues.data.subarray(b * per, (b + 1) * per), [1, ch, H, W]) });
      const t = r[VISION_OUTPUT_NHWC];
      outs.push({ data: t.data as Float32Array, shape: [...t.dims] });
    }
    if (B === 1) return outs[0];
    const n = outs[0].data.length;
    const data = new Float32Array(B * n);
    outs.forEach((o, b) => data.set(o.data, b * n));
    return { data, shape: [B, ...outs[0].shape.slice(1)] };
  }

  private decoderSession(sig: DecoderSignature): Promise<OrtSession> {
    const version = this.o.weights.decoderVersion();
    if (version.length !== this.decoderVersion.length || version.some((v, i) => v !== this.decoderVersion[i])) {
      for (const s of this.decoders.values()) void s.then((x) => x.release(), () => undefined);
      this.decoders.clear();
      this.decoderVersion = version;
    }
    const key = signatureKey(sig);
    let s = this.decoders.get(key);
    if (!s) {
      const g = buildDecoderGraph(this.o.config, this.o.weights.host(decoderPrefixes()), sig);
      s = createSession(g.encode(), `the prompt encoder + mask decoder graph (${key})`, { threads: this.o.threads });
      s.catch(() => this.decoders.delete(key));
      this.decoders.set(key, s);
    }
    return s;
  }

  async decode(inp: DecodeInputs): Promise<DecodeResult> {
    return this.run(inp, false);
  }

  /** The prompt encoder's outputs for these prompts: sparse [B, pb, n, C] (undefined without prompts), dense NCHW. */
  async promptEmbeddings(inp: Omit<DecodeInputs, 'multimask'>): Promise<{ sparse?: HostArray; dense: HostArray }> {
    const r = await this.run({ ...inp, multimask: false }, true);
    return { sparse: r.sparse, dense: r.dense! };
  }

  private async run(inp: DecodeInputs, debug: boolean): Promise<DecodeResult & { sparse?: HostArray; dense?: HostArray }> {
    const sig: DecoderSignature = {
      points: inp.inputPoints ? inp.inputPoints.shape[2] : 0,
      boxes: !!inp.inputBoxes, masks: !!inp.inputMasks, multimask: inp.multimask, debug,
    };
    if (inp.inputPoints && !inp.inputLabels) throw new Error('input_points were given without input_labels');
    if (inp.inputPoints && inp.inputPoints.shape.length !== 4) throw new Error(`input_points must be [B, point_batch, N, 2], got [${inp.inputPoints.shape}]`);
    if (inp.inputBoxes && (inp.inputBoxes.shape.length !== 3 || inp.inputBoxes.shape[2] !== 4)) throw new Error(`input_boxes must be [B, nb, 4], got [${inp.inputBoxes.shape}]`);
    if (inp.inputPoints && inp.inputBoxes && inp.inputPoints.shape[1] !== inp.inputBoxes.shape[1]) {
      throw new Error(`points have point_batch ${inp.inputPoints.shape[1]} but boxes have ${inp.inputBoxes.shape[1]}: they must match`);
    }
    if (inp.inputLabels) {
      for (const l of inp.inputLabels.data) if (l !== 1 && l !== 0 && l !== -1 && l !== -10) throw new Error(`point label ${l} is not one of 1 (positive), 0 (negative), -1 (not a point), -10 (padding)`);
    }
    const s = await this.decoderSession(sig);
    const feeds: Record<string, ReturnType<typeof f32>> = { image_embeddings_nhwc: f32(inp.embeddingsNHWC.data, inp.embeddingsNHWC.shape) };
    if (inp.inputPoints) feeds.input_points = f32(inp.inputPoints.data, inp.inputPoints.shape);
    if (inp.inputLabels) feeds.input_labels = i64(inp.inputLabels.data, inp.inputLabels.shape);
    if (inp.inputBoxes) feeds.input_boxes = f32(inp.inputBoxes.data, inp.inputBoxes.shape);
    if (inp.inputMasks) feeds.input_masks = f32(inp.inputMasks.data, inp.inputMasks.shape);
    const r = await s.run(feeds);
    const host = (name: string): HostArray | undefined => (r[name] ? { data: r[name].data as Float32Array, shape: [...r[name].dims] } : undefined);
    return { predMasks: host('pred_masks')!, iouScores: host('iou_scores')!, sparse: host('sparse_embeddings'), dense: host('dense_embeddings') };
  }

  async dispose(): Promise<void> {
    const all = [this.vision, ...this.decoders.values()].filter((x): x is Promise<OrtSession> => !!x);
    this.vision = undefined;
    this.decoders.clear();
    await Promise.all(all.map((p) => p.then((s) => s.release(), () => undefined)));
  }
}
