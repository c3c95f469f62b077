// Reference parity: run every case of a fixture folder (../shared/fixtures/sam-reference format: manifest.json +
// safetensors) through our implementation and compare each tensor against the golden values.
import * as tf from '@tensorflow/tfjs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readSafetensors, type HostTensor } from './safetensors.ts';
import { parseSamConfig } from './config.ts';
import { SamModel } from './model/sam.ts';
import { processorParity } from './processorParity.ts';
import { lossAndGrads, trainStep, trainableDecoderNames, batchLoss } from './train/step.ts';
import { hostWeightSource, type EngineName, type HostArray, type SamInference } from './inference.ts';
import { createInference } from './samInference.ts';
import { imageWidePositionalEmbeddingsHost } from './onnx/layers.ts';
import { SHARED_POS_EMBED_KEY } from './checkpoint/keys.ts';
import type { SamConfig } from './config.ts';
import { adamInit, adamDispose, ADAM_DEFAULTS } from './train/adam.ts';

export interface Tolerance { atol: number; rtol: number }
export interface ParityRow {
  tensor: string;
  maxAbs: number;
  maxRel: number;
  /** Worst |a-g| / (atol + rtol·|g|): ≤ 1 passes. */
  ratio: number;
  tolerance: string;
  pass: boolean;
  note?: string;
}

export interface Manifest {
  kind: string;
  files: Record<string, string>;
  cases?: Array<Record<string, unknown> & { name: string; inputs?: Record<string, string>; runs?: Array<Record<string, unknown>> }>;
  global_inputs?: Record<string, string>;
  global_outputs?: Record<string, string>;
  tolerances?: Record<string, unknown>;
  tensors?: Record<string, { file: string; dtype: string; shape: number[] }>;
  [k: string]: unknown;
}

export async function readManifest(folder: string): Promise<Manifest> {
  const path = join(folder, 'manifest.json');
  try {
    return JSON.parse(await readFile(path, 'utf8')) as Manifest;
  } catch (e) {
    throw new Error(`${path}: cannot read the fixture manifest (${(e as Error).message})`);
  }
}

export function compareArrays(name: string, actual: ArrayLike<number>, golden: ArrayLike<number>, tol: Tolerance, note?: string): ParityRow {
  if (actual.length !== golden.length) {
    return { tensor: name, maxAbs: Infinity, maxRel: Infinity, ratio: Infinity, tolerance: fmtTol(tol), pass: false, note: `size ${actual.length} != golden ${golden.length}` };
  }
  let maxAbs = 0, maxRel = 0, ratio = 0;
  for (let i = 0; i < golden.length; i++) {
    const g = golden[i];
    const a = actual[i];
    const err = Math.abs(a - g);
    if (!(err <= maxAbs) && !Number.isNaN(maxAbs)) maxAbs = Number.isNaN(err) ? NaN : Math.max(maxAbs, err);
    const rel = err / Math.max(Math.abs(g), 1e-12);
    if (Math.abs(g) > 1e-6 && rel > maxRel) maxRel = rel;
    const r = err / (tol.atol + tol.rtol * Math.abs(g));
    if (!(r <= ratio)) ratio = Number.isNaN(r) ? Infinity : r;
  }
  return { tensor: name, maxAbs, maxRel, ratio, tolerance: fmtTol(tol), pass: ratio <= 1, note };
}

const fmtTol = (t: Tolerance) => `${t.atol}+${t.rtol}·|g|`;

function globMatch(pattern: string, name: string): boolean {
  const re = new RegExp('^' + pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$');
  return re.test(name);
}

/** Tolerance for a tensor: the manifest's default, or a stricter pattern it lists. */
export function toleranceFor(manifest: Manifest, name: string): Tolerance {
  const tols = (manifest.tolerances ?? {}) as Record<string, any>;
  const def: Tolerance = tols.default ?? { atol: 1e-4, rtol: 1e-3 };
  const strict = (tols.stricter_optional ?? {}) as Record<string, Tolerance>;
  for (const [pat, t] of Object.entries(strict)) if (globMatch(pat, name)) return t;
  return def;
}

/** Read a manifest's safetensors files into one name -> tensor map. */
async function loadTensors(folder: string, manifest: Manifest, which: string[]): Promise<Map<string, HostTensor>> {
  const all = new Map<string, HostTensor>();
  for (const key of which) {
    const file = manifest.files[key];
    if (!file) continue;
    const { tensors } = await readSafetensors(join(folder, file));
    for (const [k, v] of tensors) all.set(k, v);
  }
  return all;
}

/** `name_strideN` in a fixture = the NCHW tensor sampled as [:, :, ::N, ::N]. */
function strided(t: tf.Tensor4D, stride: number): tf.Tensor4D {
  return tf.tidy(() => tf.stridedSlice(t, [0, 0, 0, 0], t.shape, [1, 1, stride, stride]) as tf.Tensor4D);
}

function tensorOf(map: Map<string, HostTensor>, name: string): tf.Tensor {
  const t = map.get(name);
  if (!t) throw new Error(`fixture tensor ${name} is missing`);
  return tf.tensor(t.data as Float32Array, t.shape, t.dtype === 'float32' ? 'float32' : 'int32');
}

/** A fixture tensor as a host array (labels as int32). */
function hostOf(map: Map<string, HostTensor>, name: string): HostArray<Float32Array | Int32Array> {
  const t = map.get(name);
  if (!t) throw new Error(`fixture tensor ${name} is missing`);
  return { data: t.dtype === 'float32' ? (t.data as Float32Array) : Int32Array.from(t.data), shape: [...t.shape] };
}

/** NHWC [B, h, w, C] -> NCHW [B, C, h, w] on the host. */
function nhwcToNchw(a: HostArray): HostArray {
  const [B, h, w, C] = a.shape;
  const out = new Float32Array(a.data.length);
  for (let b = 0; b < B; b++) for (let p = 0; p < h * w; p++) for (let c = 0; c < C; c++) out[(b * C + c) * h * w + p] = a.data[(b * h * w + p) * C + c];
  return { data: out, shape: [B, C, h, w] };
}

/** The inference engine verify-reference runs a fixture's model with. */
function fixtureInference(engine: EngineName, config: SamConfig, model: SamModel, weights: Map<string, HostTensor>): SamInference {
  return createInference({ config, model }, { engine, weights: hostWeightSource(weights), graphCacheDir: null, warmUp: false });
}

/** Cases of kind sam_forward (full model from pixel_values) and sam_decoder_only_forward (from image_embeddings). */
export async function verifyForward(folder: string, manifest: Manifest, engine: EngineName = 'tfjs'): Promise<ParityRow[]> {
  const rows: ParityRow[] = [];
  const config = parseSamConfig(JSON.parse(await readFile(join(folder, manifest.files.config ?? 'config.json'), 'utf8')), join(folder, 'config.json'));
  const { tensors: weightsHost } = await readSafetensors(join(folder, manifest.files.weights ?? 'model.safetensors'));
  const model = SamModel.fromHost(config, weightsHost);
  const inference = fixtureInference(engine, config, model, weightsHost);
  const io = await loadTensors(folder, manifest, ['inputs', 'outputs']);
  const check = (name: string, actual: HostArray) => {
    const g = io.get(name);
    if (!g) throw new Error(`fixture tensor ${name} is missing`);
    if (actual.shape.join() !== g.shape.join()) {
      rows.push({ tensor: name, maxAbs: Infinity, maxRel: Infinity, ratio: Infinity, tolerance: '-', pass: false, note: `shape [${actual.shape}] != golden [${g.shape}]` });
      return;
    }
    rows.push(compareArrays(name, actual.data, g.data, toleranceFor(manifest, name)));
  };
  try {
    let emb: HostArray;
    const gi = manifest.global_inputs ?? {};
    if (gi.pixel_values) emb = await inference.embed(hostOf(io, gi.pixel_values) as HostArray);
    else if (gi.image_embeddings) {
      const e = tensorOf(io, gi.image_embeddings) as tf.Tensor4D;
      const t = tf.transpose(e, [0, 2, 3, 1]);
      emb = { data: t.dataSync() as Float32Array, shape: [...t.shape] };
      tf.dispose([e, t]);
    } else throw new Error('manifest has neither pixel_values nor image_embeddings in global_inputs');
    for (const [, name] of Object.entries(manifest.global_outputs ?? {})) {
      const m = /^(.*)_stride(\d+)$/.exec(name);
      const base = m ? m[1] : name;
      let t: tf.Tensor4D;
      if (base === 'image_embeddings') t = tf.tensor4d(nhwcToNchw(emb).data, nhwcToNchw(emb).shape as [number, number, number, number]);
      else if (base === 'image_positional_embeddings') {
        if (engine === 'onnx') {
          // what the ONNX decoder graph bakes in
          const s = config.prompt.imageEmbeddingSize;
          const pe = imageWidePositionalEmbeddingsHost(weightsHost.get(SHARED_POS_EMBED_KEY)!, s);
          t = tf.tensor4d(nhwcToNchw({ data: pe, shape: [1, s, s, config.prompt.hidden_size] }).data, [1, config.prompt.hidden_size, s, s]);
        } else t = model.getImageWidePositionalEmbeddings();
      } else { rows.push({ tensor: name, maxAbs: NaN, maxRel: NaN, ratio: NaN, tolerance: '-', pass: false, note: 'unknown global output' }); continue; }
      const st = m ? strided(t, Number(m[2])) : t;
      check(name, { data: st.dataSync() as Float32Array, shape: [...st.shape] });
      tf.dispose([t, st]);
    }
    for (const c of manifest.cases ?? []) {
      const inputs = c.inputs ?? {};
      const prompts = {
        embeddingsNHWC: emb,
        inputBoxes: inputs.input_boxes ? hostOf(io, inputs.input_boxes) as HostArray : undefined,
        inputPoints: inputs.input_points ? hostOf(io, inputs.input_points) as HostArray : undefined,
        inputLabels: inputs.input_labels ? hostOf(io, inputs.input_labels) as HostArray<Int32Array> : undefined,
        inputMasks: inputs.input_masks ? hostOf(io, inputs.input_masks) as HostArray : undefined,
      };
      const pe = await inference.promptEmbeddings(prompts);
      if (typeof c.sparse_embeddings === 'string' && pe.sparse) check(c.sparse_embeddings, pe.sparse);
      if (typeof c.dense_embeddings === 'string') check(c.dense_embeddings, pe.dense);
      for (const run of c.runs ?? []) {
        const out = await inference.decode({ ...prompts, multimask: Boolean(run.multimask_output) });
        if (typeof run.pred_masks === 'string') check(run.pred_masks, out.predMasks);
        if (typeof run.iou_scores === 'string') check(run.iou_scores, out.iouScores);
      }
    }
  } finally {
    await inference.dispose();
    model.dispose();
  }
  return rows;
}

function scalarRow(name: string, actual: number, golden: number, atol: number): ParityRow {
  return compareArrays(name, [actual], [golden], { atol, rtol: 0 });
}

/** Cases of kind sam_train_step: loss, every mask-decoder gradient, Adam steps at each lr, loss trajectory. */
export async function verifyTrainStep(folder: string, manifest: Manifest, engine: EngineName = 'tfjs'): Promise<ParityRow[]> {
  const rows: ParityRow[] = [];
  const m = manifest as any;
  const tols = m.tolerances ?? {};
  const config = parseSamConfig(JSON.parse(await readFile(join(folder, manifest.files.config ?? 'config.json'), 'utf8')), join(folder, 'config.json'));
  const { tensors: weightsHost } = await readSafetensors(join(folder, manifest.files.weights ?? 'model.safetensors'));
  const io = await loadTensors(folder, manifest, ['inputs', 'outputs']);
  const { tensors: goldenGrads } = await readSafetensors(join(folder, manifest.files.grads ?? 'grads.safetensors'));
  const fwd = m.forward ?? {};
  const model = SamModel.fromHost(config, weightsHost);
  // Embeddings and the step-0 forward from the chosen engine; training itself always runs on tfjs (as in fedsam train,
  // which reads embeddings from the cache whichever engine made them).
  const inference = fixtureInference(engine, config, model, weightsHost);
  const embHost = await inference.embed(hostOf(io, fwd.pixel_values ?? 'pixel_values') as HostArray);
  const emb = tf.tensor4d(embHost.data, embHost.shape as [number, number, number, number]);
  const boxes = tensorOf(io, fwd.input_boxes ?? 'input_boxes') as tf.Tensor3D;
  const target = tensorOf(io, 'gt_masks') as tf.Tensor4D;
  const batch = { embeddingsNHWC: emb, boxes, target };
  const decoderNames = model.decoderParameterNames();
  const names = trainableDecoderNames(decoderNames, config.decoder.num_multimask_outputs);
  const original = new Map([...model.weights].filter(([n]) => n.startsWith('mask_decoder.')).map(([n, t]) => [n, t.clone()]));
  try {
    // step-0 forward
    if (io.has('pred_masks')) {
      const out = await inference.decode({ embeddingsNHWC: embHost, inputBoxes: hostOf(io, fwd.input_boxes ?? 'input_boxes') as HostArray, multimask: false });
      const t = tols.pred_masks ?? { atol: 1e-4, rtol: 1e-3 };
      rows.push(compareArrays('pred_masks', out.predMasks.data, io.get('pred_masks')!.data, t));
    }
    // loss and gradients
    const { parts, grads } = lossAndGrads(model, batch, names);
    const lt = tols.loss_step0_and_loss_per_step?.atol ?? 1e-5;
    rows.push(scalarRow('loss_step0', parts.loss.dataSync()[0], m.loss.loss_step0, lt));
    rows.push(scalarRow('dice_step0', parts.dice.dataSync()[0], m.loss.dice_step0, lt));
    rows.push(scalarRow('bce_step0', parts.bce.dataSync()[0], m.loss.bce_step0, lt));
    tf.dispose([parts.loss, parts.dice, parts.bce]);
    const gt = tols.grads ?? { atol: 1e-6, rtol: 1e-3 };
    let worst: ParityRow | undefined;
    let count = 0;
    for (const name of decoderNames) {
      const golden = goldenGrads.get(name);
      if (!golden) { rows.push({ tensor: `grad ${name}`, maxAbs: NaN, maxRel: NaN, ratio: Infinity, tolerance: '-', pass: false, note: 'missing from grads file' }); continue; }
      const g = grads.get(name);
      const actual = g ? g.dataSync() : new Float32Array(golden.data.length); // no gradient = zeros (torch: None)
      const row = compareArrays(`grad ${name}`, actual, golden.data, gt);
      count++;
      if (!row.pass) rows.push(row);
      if (!worst || row.ratio > worst.ratio) worst = row;
    }
    for (const g of grads.values()) g.dispose();
    if (worst) rows.push({ ...worst, tensor: `grads (${count} tensors, worst: ${worst.tensor.replace('grad mask_decoder.', '')})` });
    // Adam trajectories
    for (const variant of m.adam_variants ?? []) {
      for (const [n, t] of original) { model.weights.get(n)!.dispose(); model.weights.set(n, t.clone()); }
      const state = adamInit();
      const opts = { ...ADAM_DEFAULTS, lr: variant.lr, beta1: variant.betas[0], beta2: variant.betas[1], eps: variant.eps, weightDecay: variant.weight_decay };
      const losses: number[] = [];
      const steps = variant.loss_per_step.length;
      const lr = variant.lr;
      for (let s = 0; s < steps; s++) {
        losses.push(trainStep(model, batch, names, state, opts).loss);
        if (s === 0 || s === steps - 1) {
          const file = s === 0 ? variant.params_after_1_step : variant.params_after_6_steps;
          const { tensors: goldenParams } = await readSafetensors(join(folder, file));
          let wc = 0, ic = 0, wcRow: ParityRow | undefined, icRow: ParityRow | undefined;
          for (const name of decoderNames) {
            const gp = goldenParams.get(name)!;
            const ours = model.weights.get(name)!.dataSync();
            const g0 = goldenGrads.get(name)!.data;
            // Elements whose step-0 gradient is below 1e-6 are ill-conditioned under Adam: atol lr·steps.
            const wellA: number[] = [], wellG: number[] = [], illA: number[] = [], illG: number[] = [];
            for (let i = 0; i < gp.data.length; i++) {
              if (Math.abs(g0[i]) >= 1e-6) { wellA.push(ours[i]); wellG.push(gp.data[i]); } else { illA.push(ours[i]); illG.push(gp.data[i]); }
            }
            const wr = compareArrays(name, wellA, wellG, { atol: 1e-6, rtol: 0 });
            const ir = compareArrays(name, illA, illG, { atol: lr * (s + 1), rtol: 0 });
            wc += wellA.length; ic += illA.length;
            if (!wcRow || wr.ratio > wcRow.ratio) wcRow = wr;
            if (!icRow || ir.ratio > icRow.ratio) icRow = ir;
          }
          const tag = `params after ${s + 1} step${s ? 's' : ''} lr=${lr}`;
          if (wcRow) rows.push({ ...wcRow, tensor: `${tag} (${wc} el., |g|≥1e-6)`, note: `worst ${wcRow.tensor.replace('mask_decoder.', '')}` });
          if (icRow && ic) rows.push({ ...icRow, tensor: `${tag} (${ic} el., |g|<1e-6)`, note: `worst ${icRow.tensor.replace('mask_decoder.', '')}` });
        }
      }
      rows.push(compareArrays(`loss_per_step lr=${lr}`, losses, variant.loss_per_step, { atol: lt, rtol: 0 }));
      rows.push(scalarRow(`loss_after_last_step lr=${lr}`, batchLoss(model, batch).loss, variant.loss_after_last_step, lt));
      adamDispose(state);
    }
  } finally {
    await inference.dispose();
    tf.dispose([emb, boxes, target, ...original.values()]);
    model.dispose();
  }
  return rows;
}

/** Run whatever kind of fixture folder this is. */
export async function verifyReferenceFolder(folder: string, engine: EngineName = 'tfjs'): Promise<{ kind: string; rows: ParityRow[] }> {
  const manifest = await readManifest(folder);
  switch (manifest.kind) {
    case 'sam_forward':
    case 'sam_decoder_only_forward':
      return { kind: manifest.kind, rows: await verifyForward(folder, manifest, engine) };
    case 'sam_processor': {
      const rows = await processorParity(folder);
      return { kind: manifest.kind, rows: rows.map((r) => ({ ...r, tensor: `${r.stage}: ${r.tensor}` })) };
    }
    case 'sam_train_step':
      return { kind: manifest.kind, rows: await verifyTrainStep(folder, manifest, engine) };
    default:
      throw new Error(`${folder}: fixture kind "${manifest.kind}" is not supported by this version of fedsam`);
  }
}
