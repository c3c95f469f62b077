// Loading HuggingFace SAM checkpoint folders, as SamModel.from_pretrained reads them: config.json +
// model.safetensors (or model-0000i-of-0000n.safetensors shards + model.safetensors.index.json), HF parameter names.
import { readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { parseSamConfig, type SamConfig } from '../config.ts';
import { readSafetensors, readSafetensorsHeader, type HostTensor, type SafetensorsEntry } from '../safetensors.ts';
import { CheckpointError, listCapped, mismatchError } from './errors.ts';
import { expectedSamParameters, normalizeSamKey, SAM_PARTS, samPartOf, SHARED_POS_EMBED_KEY, TIED_POS_EMBED_KEY, type SamPart } from './keys.ts';

export interface LoadSamCheckpointOptions {
  /** Parts to read (default: all). The other parts' data is never read. */
  parts?: SamPart[];
  /** Non-fatal findings (default: process.emitWarning). */
  onWarning?: (message: string) => void;
}

/** A model in memory: its config and HF-named host weights (what pretraining's --init transforms take and give). */
export type SamCheckpoint = Pick<LoadedSamCheckpoint, 'config' | 'weights'>;

export interface LoadedSamCheckpoint {
  config: SamConfig;
  /** HF names, module order. The tied TIED_POS_EMBED_KEY (when prompt_encoder is requested) is the same object as
   *  SHARED_POS_EMBED_KEY's tensor. */
  weights: Map<string, HostTensor>;
  /** The files the checkpoint consists of: config.json, then the weight file(s). */
  files: string[];
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

async function readJson(file: string): Promise<unknown> {
  const text = await readFile(file, 'utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

/** The weight files of a folder: model.safetensors, or the shards listed in model.safetensors.index.json. */
async function weightFiles(dir: string): Promise<string[]> {
  const single = join(dir, 'model.safetensors');
  if (await isFile(single)) return [single];
  const indexPath = join(dir, 'model.safetensors.index.json');
  if (await isFile(indexPath)) {
    const index = await readJson(indexPath);
    const map = (index as { weight_map?: unknown })?.weight_map;
    if (typeof map !== 'object' || map === null || Array.isArray(map) || !Object.values(map).every((f) => typeof f === 'string')) {
      throw new CheckpointError(`${indexPath}: no valid "weight_map" ({parameter name: shard file})`);
    }
    const shards = [...new Set(Object.values(map as Record<string, string>))].sort();
    for (const s of shards) {
      if (s.includes('/') || s.includes('\\') || s === '..') throw new CheckpointError(`${indexPath}: shard name "${s}" must be a file name in the folder`);
      if (!(await isFile(join(dir, s)))) {
        throw new CheckpointError(`${dir}: shard ${s} listed in model.safetensors.index.json is missing`);
      }
    }
    return shards.map((s) => join(dir, s));
  }
  const hint = (await isFile(join(dir, 'pytorch_model.bin')))
    ? ' (found pytorch_model.bin: re-save it with save_pretrained(..., safe_serialization=True); .bin pickles are not read)'
    : '';
  throw new CheckpointError(`${dir}: missing model.safetensors (or model.safetensors.index.json with shards)${hint}`);
}

interface Located {
  file: string;
  /** Name as stored in the file. */
  stored: string;
  entry: SafetensorsEntry;
}

/**
 * Load a HF SAM checkpoint folder (SamModel.from_pretrained layout). Only the requested parts are read; keys,
 * shapes and dtypes are checked against config.json before any tensor data is read.
 */
export async function loadSamCheckpoint(dir: string, opts: LoadSamCheckpointOptions = {}): Promise<LoadedSamCheckpoint> {
  const parts = new Set<SamPart>(opts.parts ?? SAM_PARTS);
  for (const p of parts) if (!SAM_PARTS.includes(p)) throw new CheckpointError(`unknown checkpoint part "${p}" (use ${SAM_PARTS.join(', ')})`);
  const warn = opts.onWarning ?? ((msg: string) => process.emitWarning(msg, { type: 'CheckpointWarning' }));

  let st;
  try {
    st = await stat(dir);
  } catch {
    throw new CheckpointError(`checkpoint folder ${dir} does not exist`);
  }
  if (!st.isDirectory()) throw new CheckpointError(`${dir} is not a folder (expected a SAM checkpoint folder with config.json and model.safetensors)`);
  const configPath = join(dir, 'config.json');
  if (!(await isFile(configPath))) {
    throw new CheckpointError(`${dir}: missing config.json (a SAM checkpoint folder has config.json and model.safetensors, as save_pretrained writes them)`);
  }
  const config = parseSamConfig(await readJson(configPath), configPath);
  const files = await weightFiles(dir);

  // Headers only: where every (normalized) key lives.
  const located = new Map<string, Located>();
  const duplicates: string[] = [];
  for (const file of files) {
    const header = await readSafetensorsHeader(file);
    for (const [stored, entry] of header.entries) {
      const name = normalizeSamKey(stored);
      const prev = located.get(name);
      if (prev) duplicates.push(prev.stored === stored ? `${name} (in ${basename(prev.file)} and ${basename(file)})` : `${name} (stored as both ${prev.stored} and ${stored})`);
      else located.set(name, { file, stored, entry });
    }
  }
  if (duplicates.length) throw new CheckpointError(`${dir}: duplicate weights: ${listCapped(duplicates)}`);

  const where = `checkpoint ${dir}`;
  const expectedAll = expectedSamParameters(config);
  const wantTied = parts.has('prompt_encoder') || parts.has('shared_image_embedding');
  // The tied pair may come from either key.
  const posSource = located.get(SHARED_POS_EMBED_KEY) ?? located.get(TIED_POS_EMBED_KEY);

  const missing: string[] = [];
  const unexpected: string[] = [];
  const mismatched: string[] = [];
  const toRead = new Map<string, Set<string>>(); // file -> stored names
  const want = (loc: Located) => {
    let s = toRead.get(loc.file);
    if (!s) toRead.set(loc.file, (s = new Set()));
    s.add(loc.stored);
  };
  const checkShape = (name: string, loc: Located) => {
    const expected = expectedAll.get(name)!;
    const got = loc.entry.shape;
    if (got.length !== expected.length || got.some((d, i) => d !== expected[i])) {
      mismatched.push(`${name}: file [${got.join(', ')}] vs config [${expected.join(', ')}]`);
    } else if (!['F32', 'F16', 'BF16', 'F64'].includes(loc.entry.dtype)) {
      mismatched.push(`${name}: dtype ${loc.entry.dtype}, expected a float dtype`);
    }
  };
  for (const [name, _shape] of expectedAll) {
    const part = samPartOf(name)!;
    if (!parts.has(part)) continue;
    if (name === TIED_POS_EMBED_KEY || name === SHARED_POS_EMBED_KEY) {
      if (!posSource) missing.push(name);
      continue;
    }
    const loc = located.get(name);
    if (!loc) missing.push(name);
    else checkShape(name, loc);
  }
  if (wantTied && posSource) {
    for (const key of [SHARED_POS_EMBED_KEY, TIED_POS_EMBED_KEY]) {
      const loc = located.get(key);
      if (loc) {
        checkShape(key, loc);
        want(loc);
      }
    }
  }
  for (const name of located.keys()) {
    const part = samPartOf(name);
    if (part === undefined) unexpected.push(name);
    else if (parts.has(part) && !expectedAll.has(name)) unexpected.push(name);
  }
  if (missing.length || unexpected.length || mismatched.length) {
    const hints: string[] = [];
    if ([...located.keys()].some((k) => k.startsWith('image_encoder.') || k.startsWith('mask_decoder.output_upscaling.'))) {
      hints.push("This looks like an original segment-anything checkpoint (image_encoder.*): convert it with transformers' convert_sam_to_hf.py.");
    }
    for (const part of parts) {
      const prefix = `${part}.`;
      if (missing.some((k) => k.startsWith(prefix)) && ![...located.keys()].some((k) => k.startsWith(prefix)) && part !== 'shared_image_embedding') {
        hints.push(`The folder has no ${part}.* weights at all: do not request part "${part}", or use a checkpoint that contains it.`);
      }
    }
    throw mismatchError(
      where,
      config,
      missing,
      unexpected,
      mismatched,
      hints,
      'Check that config.json was saved with these weights (same model size), or re-export the folder with SamModel.save_pretrained / saveSamCheckpoint.',
    );
  }
  for (const [name, loc] of located) {
    const part = samPartOf(name);
    if (part && parts.has(part) && name !== TIED_POS_EMBED_KEY && name !== SHARED_POS_EMBED_KEY) want(loc);
  }

  // Data: only the wanted tensors, file by file.
  const loaded = new Map<string, HostTensor>();
  const usedFiles: string[] = [];
  for (const file of files) {
    const names = toRead.get(file);
    if (!names?.size) continue;
    usedFiles.push(file);
    const { tensors } = await readSafetensors(file, { filter: (n) => names.has(n) });
    for (const [stored, t] of tensors) loaded.set(normalizeSamKey(stored), t);
  }

  const weights = new Map<string, HostTensor>();
  let pos: HostTensor | undefined;
  if (wantTied) {
    const shared = loaded.get(SHARED_POS_EMBED_KEY);
    const tied = loaded.get(TIED_POS_EMBED_KEY);
    if (shared && tied && !sameValues(shared, tied)) {
      warn(`${where}: ${TIED_POS_EMBED_KEY} differs from ${SHARED_POS_EMBED_KEY}; using ${SHARED_POS_EMBED_KEY} for both (HF ties them)`);
    }
    pos = shared ?? tied;
  }
  for (const name of expectedAll.keys()) {
    const part = samPartOf(name)!;
    if (!parts.has(part)) continue;
    const t = name === TIED_POS_EMBED_KEY || name === SHARED_POS_EMBED_KEY ? pos : loaded.get(name);
    if (!t) throw new CheckpointError(`${where}: internal error: ${name} was not read`);
    weights.set(name, t);
  }
  return { config, weights, files: [configPath, ...(usedFiles.length ? usedFiles : files)] };
}

function sameValues(a: HostTensor, b: HostTensor): boolean {
  if (a.data.length !== b.data.length) return false;
  for (let i = 0; i < a.data.length; i++) if (a.data[i] !== b.data[i]) return false;
  return true;
}
