// Processor parity: run a fixture folder in the sam-reference `processor/` format (manifest.json kind
// "sam_processor" + preprocessor_config.json + images + processor.safetensors) through shared/src/processor.ts and
// compare every stage. Decode and resize are reported separately from the later (float) steps, and every stage
// that has a golden input is also run from that input, so a decoder difference does not hide a resize bug.
import { readFile } from 'node:fs/promises';
import { join, parse } from 'node:path';
import { initBackend } from './backend.ts';
import { readImageRGB } from './image.ts';
import {
  loadPreprocessorConfig,
  pixelValuesFromResized,
  postProcessMasks,
  preparePrompts,
  getPreprocessShape,
  type SizeHW,
} from './processor.ts';
import { resizeBilinearPillow } from './resample/pillowBilinear.ts';
import { resizeBilinearTorch } from './resample/torchBilinear.ts';
import { readSafetensors, type HostTensor } from './safetensors.ts';

export type ParityStage = 'decode' | 'resize' | 'normalize' | 'sizes' | 'prompts' | 'postprocess';

/** One comparison. Structurally a superset of reference.ts's ParityRow (ratio <= 1 passes). */
export interface ProcessorParityRow {
  stage: ParityStage;
  tensor: string;
  maxAbs: number;
  maxRel: number;
  meanAbs: number;
  /** Worst error relative to the tolerance (<= 1 passes) where the criterion is a single bound. */
  ratio: number;
  tolerance: string;
  pass: boolean;
  note?: string;
}

interface ProcessorManifest {
  kind?: string;
  files?: { preprocessor_config?: string; tensors?: string };
  images: Array<{
    file: string;
    original_size: SizeHW;
    reshaped_input_size: SizeHW;
    pixel_values?: string;
    pixel_values_sample?: string;
    pixel_values_shape?: number[];
    pixel_values_stats_full_1024x1024?: Stats;
    pixel_values_stats_valid_region?: Stats;
  }>;
  prompts?: Array<{
    image: string;
    name: string;
    raw: { boxes?: number[][]; points?: number[][]; labels?: number[] };
    outputs: Record<string, { exact_values: unknown; shape: number[]; tensor?: string }>;
  }>;
  post_process_masks?: {
    image: string;
    input: string;
    intermediate?: string;
    output_float?: string;
    output_binary?: string;
    original_sizes: SizeHW[];
    reshaped_input_sizes: SizeHW[];
    pad_size?: { height: number; width: number };
    mask_threshold?: number;
  };
  tolerances?: Record<string, any>;
}

interface Stats {
  mean: number[];
  std: number[];
  min: number[];
  max: number[];
}

interface DiffStats {
  maxAbs: number;
  maxRel: number;
  meanAbs: number;
  /** fraction with |a-g| <= within */
  fracWithin: number;
  equal: number;
  n: number;
}

function diff(a: ArrayLike<number>, g: ArrayLike<number>, within = 0): DiffStats {
  if (a.length !== g.length) throw new Error(`length mismatch ${a.length} vs ${g.length}`);
  let maxAbs = 0, maxRel = 0, sum = 0, ok = 0, eq = 0;
  for (let i = 0; i < g.length; i++) {
    const d = Math.abs(a[i]! - g[i]!);
    if (d > maxAbs || Number.isNaN(d)) maxAbs = Number.isNaN(d) ? Infinity : d;
    const ag = Math.abs(g[i]!);
    if (ag > 1e-6 && d / ag > maxRel) maxRel = d / ag;
    sum += d;
    if (d <= within) ok++;
    if (d === 0) eq++;
  }
  const n = g.length;
  return { maxAbs, maxRel, meanAbs: n ? sum / n : 0, fracWithin: n ? ok / n : 1, equal: n ? eq / n : 1, n };
}

function atolRow(stage: ParityStage, tensor: string, d: DiffStats, atol: number, note?: string): ProcessorParityRow {
  const ratio = atol > 0 ? d.maxAbs / atol : d.maxAbs === 0 ? 0 : Infinity;
  return { stage, tensor, maxAbs: d.maxAbs, maxRel: d.maxRel, meanAbs: d.meanAbs, ratio, tolerance: atol === 0 ? 'exact' : `atol ${atol}`, pass: ratio <= 1, ...(note ? { note } : {}) };
}

const pct = (x: number) => `${(100 * x).toFixed(4)}%`;

/** Strided sample [C, H, W] -> [C, H/s, W/s] (top-left aligned, like x[:, ::s, ::s]). */
function strided(src: Float32Array, C: number, H: number, W: number, s: number): Float32Array {
  const h = Math.ceil(H / s), w = Math.ceil(W / s);
  const out = new Float32Array(C * h * w);
  for (let c = 0; c < C; c++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[(c * h + y) * w + x] = src[(c * H + y * s) * W + x * s]!;
  return out;
}

function channelStats(pv: Float32Array, H: number, W: number, region?: SizeHW): Stats {
  const r: Stats = { mean: [], std: [], min: [], max: [] };
  const [rh, rw] = region ?? [H, W];
  for (let c = 0; c < 3; c++) {
    let s = 0, s2 = 0, mn = Infinity, mx = -Infinity;
    for (let y = 0; y < rh; y++) {
      const base = (c * H + y) * W;
      for (let x = 0; x < rw; x++) {
        const v = pv[base + x]!;
        s += v;
        s2 += v * v;
        if (v < mn) mn = v;
        if (v > mx) mx = v;
      }
    }
    const n = rh * rw;
    const mean = s / n;
    r.mean.push(mean);
    r.std.push(Math.sqrt(Math.max(0, s2 / n - mean * mean)));
    r.min.push(mn);
    r.max.push(mx);
  }
  return r;
}

function flatten(v: unknown): number[] {
  return Array.isArray(v) ? v.flatMap(flatten) : [Number(v)];
}

export interface ProcessorParityOptions {
  /** Also run post_process_masks through tf.image.resizeBilinear (needs a tfjs backend). Default true. */
  includeTf?: boolean;
}

/**
 * Full processor comparison on a fixture folder (sam-reference `processor/` format). Images, prompt cases and the
 * post-processing case are taken from manifest.json. Returns one row per compared quantity.
 */
export async function processorParity(folder: string, opts: ProcessorParityOptions = {}): Promise<ProcessorParityRow[]> {
  const manifestPath = join(folder, 'manifest.json');
  let manifest: ProcessorManifest;
  try {
    manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as ProcessorManifest;
  } catch (e) {
    throw new Error(`${manifestPath}: cannot read the processor fixture manifest (${(e as Error).message})`);
  }
  if (manifest.kind && manifest.kind !== 'sam_processor') throw new Error(`${manifestPath}: kind is "${manifest.kind}", expected "sam_processor"`);
  if (!Array.isArray(manifest.images)) throw new Error(`${manifestPath}: no "images" list`);
  const { config: cfg } = await loadPreprocessorConfig(folder);
  const tensorsFile = join(folder, manifest.files?.tensors ?? 'processor.safetensors');
  const { tensors } = await readSafetensors(tensorsFile);
  const get = (name: string): HostTensor | undefined => tensors.get(name);
  const tol = manifest.tolerances ?? {};
  const pvExactAtol: number = tol.pixel_values?.if_resize_reproduces_PIL_exactly?.atol ?? 1e-6;
  const pvMaxAbs: number = tol.pixel_values?.otherwise?.max_abs ?? 0.06;
  const pvMinFrac: number = tol.pixel_values?.otherwise?.min_fraction_within_0_0175 ?? tol.pixel_values?.otherwise?.['min_fraction_within_0.0175'] ?? 0.99;
  const oneLevel = 0.0175;
  const promptAtol: number = tol.input_boxes_input_points?.atol ?? 1e-3;
  const masksAtol: number = tol['post.masks']?.atol ?? 2e-3;
  const upAtol: number = tol['post.upscaled_1024_stride4']?.atol ?? 1e-4;

  const rows: ProcessorParityRow[] = [];
  const sizesByImage = new Map<string, { original: SizeHW; reshaped: SizeHW }>();

  const pvRow = (tensor: string, d: DiffStats, note: string): ProcessorParityRow => {
    if (d.maxAbs <= pvExactAtol) return atolRow('normalize', tensor, d, pvExactAtol, note);
    const pass = d.maxAbs <= pvMaxAbs && d.fracWithin >= pvMinFrac;
    return {
      stage: 'normalize', tensor, maxAbs: d.maxAbs, maxRel: d.maxRel, meanAbs: d.meanAbs, ratio: d.maxAbs / pvMaxAbs,
      tolerance: `atol ${pvExactAtol}, else max ${pvMaxAbs} & >=${pct(pvMinFrac)} within ${oneLevel}`, pass,
      note: `${note}; ${pct(d.fracWithin)} within ${oneLevel}`,
    };
  };

  for (const img of manifest.images) {
    const stem = img.pixel_values?.split('.')[0] ?? img.pixel_values_sample?.split('.')[0] ?? parse(img.file).name;
    const file = join(folder, img.file);
    const decoded = await readImageRGB(file);
    const original: SizeHW = [decoded.height, decoded.width];
    const reshaped = getPreprocessShape(original, cfg.size.longest_edge);
    sizesByImage.set(img.file, { original, reshaped });

    // sizes
    const sizeDiff = diff([...original, ...reshaped], [...img.original_size, ...img.reshaped_input_size]);
    rows.push(atolRow('sizes', `${stem}.original_sizes+reshaped_input_sizes`, sizeDiff, 0, `ours ${original.join('x')} -> ${reshaped.join('x')}`));
    for (const [name, ours] of [['original_sizes', original], ['reshaped_input_sizes', reshaped]] as const) {
      const g = get(`${stem}.${name}`);
      if (g) rows.push(atolRow('sizes', `${stem}.${name}`, diff(ours, g.data), 0));
    }

    // decode
    const gDec = get(`${stem}.decoded_rgb_uint8`);
    if (gDec) {
      const d = diff(decoded.data, gDec.data);
      rows.push({
        stage: 'decode', tensor: `${stem}.decoded_rgb_uint8`, maxAbs: d.maxAbs, maxRel: d.maxRel, meanAbs: d.meanAbs, ratio: d.meanAbs / 1,
        tolerance: 'mean |diff| <= 1 level (exact with libjpeg-turbo)', pass: d.meanAbs <= 1,
        note: `sharp ${decoded.info.format} decoder vs PIL; ${pct(d.equal)} identical`,
      });
    }

    // resize: from the golden decode (isolates the resize) and end to end
    const gRes = get(`${stem}.resized_rgb_uint8`);
    const [h, w] = reshaped;
    if (gRes && gDec) {
      const [H, W] = gDec.shape as [number, number];
      const r = resizeBilinearPillow(gDec.data as Uint8Array, W, H, 3, w, h);
      rows.push(atolRow('resize', `${stem}.resized_rgb_uint8`, diff(r, gRes.data), 0, 'from PIL-decoded golden input; Pillow BILINEAR must be bit-exact'));
    }
    const ourResized = resizeBilinearPillow(decoded.data, decoded.width, decoded.height, 3, w, h);
    if (gRes) {
      const d = diff(ourResized, gRes.data);
      rows.push({
        stage: 'resize', tensor: `${stem}.resized_rgb_uint8 (from file)`, maxAbs: d.maxAbs, maxRel: d.maxRel, meanAbs: d.meanAbs, ratio: d.maxAbs / 2,
        tolerance: 'exact, else max <= 2 & >= 99% identical', pass: d.maxAbs === 0 || (d.maxAbs <= 2 && d.equal >= 0.99),
        note: `decode + resize; ${pct(d.equal)} identical`,
      });
    }

    // normalize + pad
    const padH = cfg.do_pad ? cfg.pad_size.height : h;
    const padW = cfg.do_pad ? cfg.pad_size.width : w;
    const pvFile = pixelValuesFromResized({ data: ourResized, width: w, height: h }, cfg).data;
    const pvFromGolden = gRes ? pixelValuesFromResized({ data: gRes.data as Uint8Array, width: w, height: h }, cfg).data : undefined;
    const gPv = img.pixel_values ? get(img.pixel_values) : undefined;
    if (gPv) {
      if (pvFromGolden) rows.push(atolRow('normalize', `${img.pixel_values} (from golden resized uint8)`, diff(pvFromGolden, gPv.data), pvExactAtol, 'rescale+normalize+pad only'));
      rows.push(pvRow(`${img.pixel_values} (from file)`, diff(pvFile, gPv.data, oneLevel), 'end to end'));
    }
    const gSample = img.pixel_values_sample ? get(img.pixel_values_sample) : undefined;
    if (gSample) {
      const s = Math.round(padH / gSample.shape[2]!);
      if (pvFromGolden) {
        rows.push(atolRow('normalize', `${img.pixel_values_sample} (from golden resized uint8)`, diff(strided(pvFromGolden, 3, padH, padW, s), gSample.data), pvExactAtol, `[:, :, ::${s}, ::${s}] sample`));
      }
      rows.push(pvRow(`${img.pixel_values_sample} (from file)`, diff(strided(pvFile, 3, padH, padW, s), gSample.data, oneLevel), `end to end, [:, :, ::${s}, ::${s}] sample`));
    }
    for (const [key, region] of [['pixel_values_stats_full_1024x1024', undefined], ['pixel_values_stats_valid_region', [h, w] as SizeHW]] as const) {
      const gs = img[key];
      if (!gs) continue;
      const ours = channelStats(pvFile, padH, padW, region);
      const o = [...ours.mean, ...ours.std, ...ours.min, ...ours.max];
      const g = [...gs.mean, ...gs.std, ...gs.min, ...gs.max];
      rows.push(atolRow('normalize', `${stem}.${key} (from file)`, diff(o, g), 1e-4, 'per-channel mean/std/min/max'));
    }
  }

  // prompts
  for (const p of manifest.prompts ?? []) {
    const sz = sizesByImage.get(p.image);
    if (!sz) throw new Error(`${manifestPath}: prompt case ${p.name} refers to unknown image ${p.image}`);
    const arrays = preparePrompts(
      [{ ...(p.raw.points ? { points: p.raw.points } : {}), ...(p.raw.labels ? { labels: p.raw.labels } : {}), ...(p.raw.boxes ? { boxes: p.raw.boxes } : {}) }],
      [sz.original],
      [sz.reshaped],
    );
    for (const [field, spec] of Object.entries(p.outputs)) {
      const ours = arrays.values[field as keyof typeof arrays.values];
      const label = `${parse(p.image).name}.${p.name}.${field}`;
      if (!ours) {
        rows.push({ stage: 'prompts', tensor: label, maxAbs: Infinity, maxRel: Infinity, meanAbs: Infinity, ratio: Infinity, tolerance: `atol ${promptAtol}`, pass: false, note: 'not produced' });
        continue;
      }
      const o = flatten(ours);
      const g = flatten(spec.exact_values);
      const shapeOk = JSON.stringify(arrays[field as 'input_points']?.shape) === JSON.stringify(spec.shape);
      const isLabels = field === 'input_labels';
      const row = atolRow('prompts', label, diff(o, g), isLabels ? 0 : promptAtol, `vs float64 exact_values${shapeOk ? '' : `; SHAPE ${JSON.stringify(arrays[field as 'input_points']?.shape)} != ${JSON.stringify(spec.shape)}`}`);
      if (!shapeOk) row.pass = false;
      rows.push(row);
    }
  }

  // post_process_masks
  const pp = manifest.post_process_masks;
  if (pp) {
    const low = get(pp.input);
    if (!low) throw new Error(`${tensorsFile}: missing post_process_masks input ${pp.input}`);
    const pad = pp.pad_size ?? cfg.pad_size;
    const thr = pp.mask_threshold ?? 0;
    const [, , lh, lw] = low.shape as [number, number, number, number];
    const inter = pp.intermediate ? get(pp.intermediate) : undefined;
    if (inter) {
      const s = Math.round(pad.height / inter.shape[2]!);
      const up = resizeBilinearTorch(low.data as Float32Array, lh, lw, pad.height, pad.width);
      rows.push(atolRow('postprocess', pp.intermediate!, diff(strided(up, 1, pad.height, pad.width, s), inter.data), upAtol, `bilinear to ${pad.height}x${pad.width}, [::${s}, ::${s}]`));
    }
    const lowRes = { data: low.data as Float32Array, shape: [1, ...low.shape] };
    const impls: Array<'js' | 'tf'> = opts.includeTf === false ? ['js'] : ['js', 'tf'];
    if (impls.includes('tf')) await initBackend();
    const gF = pp.output_float ? get(pp.output_float) : undefined;
    const gB = pp.output_binary ? get(pp.output_binary) : undefined;
    for (const impl of impls) {
      const [res] = await postProcessMasks(lowRes, pp.original_sizes[0]!, pp.reshaped_input_sizes[0]!, { binarize: false, padSize: pad, impl });
      const masks = res!.data as Float32Array;
      const tag = impl === 'tf' ? ' (tf.image.resizeBilinear)' : '';
      if (gF) rows.push(atolRow('postprocess', `${pp.output_float}${tag}`, diff(masks, gF.data), masksAtol));
      if (gB) {
        let mism = 0, bad = 0;
        for (let i = 0; i < masks.length; i++) {
          const b = masks[i]! > thr ? 1 : 0;
          if (b !== gB.data[i]) {
            mism++;
            if (!gF || Math.abs(gF.data[i]!) >= masksAtol) bad++;
          }
        }
        rows.push({
          stage: 'postprocess', tensor: `${pp.output_binary}${tag}`, maxAbs: mism ? 1 : 0, maxRel: 0, meanAbs: mism / masks.length, ratio: bad ? Infinity : 0,
          tolerance: `equal except where |post.masks| < ${masksAtol}`, pass: bad === 0,
          note: `${mism} of ${masks.length} pixels differ (${pct(1 - mism / masks.length)} agree), ${bad} outside the tolerance band`,
        });
      }
    }
  }
  return rows;
}
