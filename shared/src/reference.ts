// Reference parity: run every case of a fixture folder (../shared/fixtures/sam-reference format: manifest.json +
// safetensors) through our implementation and compare each tensor against the golden values.
import * as tf from '@tensorflow/tfjs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readSafetensors, type HostTensor } from './safetensors.ts';
import { parseSamConfig } from './config.ts';
import { SamModel } from './model/sam.ts';

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

/** Cases of kind sam_forward (full model from pixel_values) and sam_decoder_only_forward (from image_embeddings). */
export async function verifyForward(folder: string, manifest: Manifest): Promise<ParityRow[]> {
  const rows: ParityRow[] = [];
  const config = parseSamConfig(JSON.parse(await readFile(join(folder, manifest.files.config ?? 'config.json'), 'utf8')), join(folder, 'config.json'));
  const { tensors: weightsHost } = await readSafetensors(join(folder, manifest.files.weights ?? 'model.safetensors'));
  const model = SamModel.fromHost(config, weightsHost);
  const io = await loadTensors(folder, manifest, ['inputs', 'outputs']);
  const check = (name: string, actual: tf.Tensor) => {
    const g = io.get(name);
    if (!g) throw new Error(`fixture tensor ${name} is missing`);
    if (actual.shape.join() !== g.shape.join()) {
      rows.push({ tensor: name, maxAbs: Infinity, maxRel: Infinity, ratio: Infinity, tolerance: '-', pass: false, note: `shape [${actual.shape}] != golden [${g.shape}]` });
      return;
    }
    rows.push(compareArrays(name, actual.dataSync(), g.data, toleranceFor(manifest, name)));
  };
  try {
    let embNHWC: tf.Tensor4D;
    const gi = manifest.global_inputs ?? {};
    if (gi.pixel_values) {
      const pv = tensorOf(io, gi.pixel_values) as tf.Tensor4D;
      embNHWC = model.imageEmbeddingsNHWC(pv);
      pv.dispose();
    } else if (gi.image_embeddings) {
      const e = tensorOf(io, gi.image_embeddings) as tf.Tensor4D;
      embNHWC = tf.transpose(e, [0, 2, 3, 1]);
      e.dispose();
    } else throw new Error('manifest has neither pixel_values nor image_embeddings in global_inputs');
    for (const [, name] of Object.entries(manifest.global_outputs ?? {})) {
      const m = /^(.*)_stride(\d+)$/.exec(name);
      const base = m ? m[1] : name;
      let t: tf.Tensor4D;
      if (base === 'image_embeddings') t = tf.transpose(embNHWC, [0, 3, 1, 2]);
      else if (base === 'image_positional_embeddings') t = model.getImageWidePositionalEmbeddings();
      else { rows.push({ tensor: name, maxAbs: NaN, maxRel: NaN, ratio: NaN, tolerance: '-', pass: false, note: 'unknown global output' }); continue; }
      const s = m ? strided(t, Number(m[2])) : t;
      check(name, s);
      tf.dispose([t, s]);
    }
    for (const c of manifest.cases ?? []) {
      const inputs = c.inputs ?? {};
      const prompts = {
        inputBoxes: inputs.input_boxes ? tensorOf(io, inputs.input_boxes) : undefined,
        inputPoints: inputs.input_points ? tensorOf(io, inputs.input_points) : undefined,
        inputLabels: inputs.input_labels ? tensorOf(io, inputs.input_labels) : undefined,
        inputMasks: inputs.input_masks ? tensorOf(io, inputs.input_masks) as tf.Tensor4D : undefined,
      };
      const B = embNHWC.shape[0];
      const pe = model.promptEncoder(B, prompts);
      if (typeof c.sparse_embeddings === 'string') check(c.sparse_embeddings, pe.sparse);
      if (typeof c.dense_embeddings === 'string') {
        const dense = tf.transpose(pe.dense, [0, 3, 1, 2]);
        check(c.dense_embeddings, dense);
        dense.dispose();
      }
      tf.dispose([pe.sparse, pe.dense]);
      for (const run of c.runs ?? []) {
        const out = model.decode(embNHWC, prompts, Boolean(run.multimask_output));
        if (typeof run.pred_masks === 'string') check(run.pred_masks, out.predMasks);
        if (typeof run.iou_scores === 'string') check(run.iou_scores, out.iouScores);
        tf.dispose([out.predMasks, out.iouScores]);
      }
      tf.dispose(Object.values(prompts).filter((x): x is tf.Tensor => !!x));
    }
    embNHWC.dispose();
  } finally {
    model.dispose();
  }
  return rows;
}

/** Run whatever kind of fixture folder this is. */
export async function verifyReferenceFolder(folder: string): Promise<{ kind: string; rows: ParityRow[] }> {
  const manifest = await readManifest(folder);
  switch (manifest.kind) {
    case 'sam_forward':
    case 'sam_decoder_only_forward':
      return { kind: manifest.kind, rows: await verifyForward(folder, manifest) };
    default:
      throw new Error(`${folder}: fixture kind "${manifest.kind}" is not supported by this version of fedsam`);
  }
}
