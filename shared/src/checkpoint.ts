// HuggingFace SAM checkpoint folders, as SamModel.from_pretrained / save_pretrained read and write them:
// config.json + model.safetensors (or model-0000i-of-0000n.safetensors shards + model.safetensors.index.json),
// HF parameter names (vision_encoder.*, prompt_encoder.*, mask_decoder.*, shared_image_embedding.*).
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { parseSamConfig, samConfigToJson, type SamConfig } from './config.ts';
import { pathExists, writeFileAtomic } from './fsutil.ts';
import {
  fsyncDir,
  readSafetensors,
  readSafetensorsHeader,
  writeSafetensors,
  type HostTensor,
  type SafetensorsEntry,
} from './safetensors.ts';

export type SamPart = 'vision_encoder' | 'prompt_encoder' | 'mask_decoder' | 'shared_image_embedding';
export const SAM_PARTS: readonly SamPart[] = ['vision_encoder', 'prompt_encoder', 'mask_decoder', 'shared_image_embedding'];

/** The buffer HF ties to SHARED_POS_EMBED_KEY; save_pretrained does not store it. */
export const TIED_POS_EMBED_KEY = 'prompt_encoder.shared_embedding.positional_embedding';
export const SHARED_POS_EMBED_KEY = 'shared_image_embedding.positional_embedding';

export class CheckpointError extends Error {
  override name = 'CheckpointError';
  constructor(
    message: string,
    readonly missing: string[] = [],
    readonly unexpected: string[] = [],
    readonly mismatched: string[] = [],
  ) {
    super(message);
  }
}

/** Which part a parameter name belongs to (its first path component), or undefined. */
export function samPartOf(name: string): SamPart | undefined {
  const head = name.split('.', 1)[0];
  return (SAM_PARTS as readonly string[]).includes(head!) ? (head as SamPart) : undefined;
}

/** Old transformers releases spelled `upscale_layer_norm` as `upsacle_layer_norm`. */
export function normalizeSamKey(name: string): string {
  return name.startsWith('mask_decoder.upsacle_layer_norm.') ? name.replace('.upsacle_layer_norm.', '.upscale_layer_norm.') : name;
}

/**
 * Every parameter (and persistent buffer) of HF `SamModel` for this config, with its shape, in module order
 * (modeling_sam.py). Includes the tied TIED_POS_EMBED_KEY, as `model.state_dict()` does.
 */
export function expectedSamParameters(config: SamConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const linear = (p: string, out: number, inp: number, bias = true) => {
    m.set(`${p}.weight`, [out, inp]);
    if (bias) m.set(`${p}.bias`, [out]);
  };
  const norm = (p: string, n: number) => {
    m.set(`${p}.weight`, [n]);
    m.set(`${p}.bias`, [n]);
  };
  const conv = (p: string, out: number, inp: number, k: number, bias = true) => {
    m.set(`${p}.weight`, [out, inp, k, k]);
    if (bias) m.set(`${p}.bias`, [out]);
  };

  // shared_image_embedding: SamPositionalEmbedding(vision_config) -> buffer [2, num_pos_feats]
  const v = config.vision;
  m.set(SHARED_POS_EMBED_KEY, [2, v.num_pos_feats]);

  // vision_encoder: SamVisionEncoder
  const h = v.hidden_size;
  conv('vision_encoder.patch_embed.projection', h, v.num_channels, v.patch_size);
  if (v.use_abs_pos) m.set('vision_encoder.pos_embed', [1, v.gridSize, v.gridSize, h]);
  const headDim = h / v.num_attention_heads;
  for (let i = 0; i < v.num_hidden_layers; i++) {
    const p = `vision_encoder.layers.${i}`;
    const window = v.global_attn_indexes.includes(i) ? 0 : v.window_size;
    const inputSize = window === 0 ? v.gridSize : window;
    norm(`${p}.layer_norm1`, h);
    linear(`${p}.attn.qkv`, 3 * h, h, v.qkv_bias);
    linear(`${p}.attn.proj`, h, h);
    if (v.use_rel_pos) {
      m.set(`${p}.attn.rel_pos_h`, [2 * inputSize - 1, headDim]);
      m.set(`${p}.attn.rel_pos_w`, [2 * inputSize - 1, headDim]);
    }
    norm(`${p}.layer_norm2`, h);
    linear(`${p}.mlp.lin1`, v.mlpDim, h);
    linear(`${p}.mlp.lin2`, h, v.mlpDim);
  }
  const oc = v.output_channels;
  conv('vision_encoder.neck.conv1', oc, h, 1, false);
  norm('vision_encoder.neck.layer_norm1', oc);
  conv('vision_encoder.neck.conv2', oc, oc, 3, false);
  norm('vision_encoder.neck.layer_norm2', oc);

  // prompt_encoder: SamPromptEncoder
  const pc = config.prompt;
  const ph = pc.hidden_size;
  m.set(TIED_POS_EMBED_KEY, [2, v.num_pos_feats]);
  const mic = pc.mask_input_channels;
  const micq = Math.floor(mic / 4);
  conv('prompt_encoder.mask_embed.conv1', micq, 1, 2);
  conv('prompt_encoder.mask_embed.conv2', mic, micq, 2);
  conv('prompt_encoder.mask_embed.conv3', ph, mic, 1);
  norm('prompt_encoder.mask_embed.layer_norm1', micq);
  norm('prompt_encoder.mask_embed.layer_norm2', mic);
  m.set('prompt_encoder.no_mask_embed.weight', [1, ph]);
  for (let i = 0; i < pc.num_point_embeddings; i++) m.set(`prompt_encoder.point_embed.${i}.weight`, [1, ph]);
  m.set('prompt_encoder.not_a_point_embed.weight', [1, ph]);

  // mask_decoder: SamMaskDecoder
  const d = config.decoder;
  const dh = d.hidden_size;
  const numMaskTokens = d.num_multimask_outputs + 1;
  m.set('mask_decoder.iou_token.weight', [1, dh]);
  m.set('mask_decoder.mask_tokens.weight', [numMaskTokens, dh]);
  const attention = (p: string, downsample: number) => {
    const internal = Math.floor(dh / downsample);
    linear(`${p}.q_proj`, internal, dh);
    linear(`${p}.k_proj`, internal, dh);
    linear(`${p}.v_proj`, internal, dh);
    linear(`${p}.out_proj`, dh, internal);
  };
  for (let i = 0; i < d.num_hidden_layers; i++) {
    const p = `mask_decoder.transformer.layers.${i}`;
    attention(`${p}.self_attn`, 1);
    norm(`${p}.layer_norm1`, dh);
    attention(`${p}.cross_attn_token_to_image`, d.attention_downsample_rate);
    norm(`${p}.layer_norm2`, dh);
    linear(`${p}.mlp.lin1`, d.mlp_dim, dh);
    linear(`${p}.mlp.lin2`, dh, d.mlp_dim);
    norm(`${p}.layer_norm3`, dh);
    norm(`${p}.layer_norm4`, dh);
    attention(`${p}.cross_attn_image_to_token`, d.attention_downsample_rate);
  }
  attention('mask_decoder.transformer.final_attn_token_to_image', d.attention_downsample_rate);
  norm('mask_decoder.transformer.layer_norm_final_attn', dh);
  // ConvTranspose2d weights are [in, out, k, k]
  m.set('mask_decoder.upscale_conv1.weight', [dh, dh / 4, 2, 2]);
  m.set('mask_decoder.upscale_conv1.bias', [dh / 4]);
  m.set('mask_decoder.upscale_conv2.weight', [dh / 4, dh / 8, 2, 2]);
  m.set('mask_decoder.upscale_conv2.bias', [dh / 8]);
  norm('mask_decoder.upscale_layer_norm', dh / 4);
  // SamFeedForward(input, hidden, output, depth): proj_in, layers.0..depth-3, proj_out
  const feedForward = (p: string, inp: number, hidden: number, out: number, depth: number) => {
    linear(`${p}.proj_in`, hidden, inp);
    for (let j = 0; j < depth - 2; j++) linear(`${p}.layers.${j}`, hidden, hidden);
    linear(`${p}.proj_out`, out, hidden);
  };
  for (let i = 0; i < numMaskTokens; i++) feedForward(`mask_decoder.output_hypernetworks_mlps.${i}`, dh, dh, dh / 8, 3);
  feedForward('mask_decoder.iou_prediction_head', dh, d.iou_head_hidden_dim, numMaskTokens, d.iou_head_depth);
  return m;
}

// ---------------------------------------------------------------------------------------------------------------
// loading

export interface LoadSamCheckpointOptions {
  /** Parts to read (default: all). The other parts' data is never read. */
  parts?: SamPart[];
  /** Non-fatal findings (default: process.emitWarning). */
  onWarning?: (message: string) => void;
}

export interface LoadedSamCheckpoint {
  config: SamConfig;
  /** HF names, module order. The tied TIED_POS_EMBED_KEY (when prompt_encoder is requested) is the same object as
   *  SHARED_POS_EMBED_KEY's tensor. */
  weights: Map<string, HostTensor>;
  /** The files the checkpoint consists of: config.json, then the weight file(s). */
  files: string[];
}

const MAX_LISTED = 12;

function listCapped(items: string[]): string {
  const shown = items.slice(0, MAX_LISTED).join(', ');
  return items.length > MAX_LISTED ? `${shown}, ... (${items.length - MAX_LISTED} more)` : shown;
}

function describeConfig(c: SamConfig): string {
  return (
    `vision ${c.vision.num_hidden_layers} layers x ${c.vision.hidden_size}, image ${c.vision.image_size}; ` +
    `prompt ${c.prompt.hidden_size}; decoder ${c.decoder.num_hidden_layers} layers x ${c.decoder.hidden_size}`
  );
}

/** One error listing every missing / unexpected / mismatched key. */
function mismatchError(
  where: string,
  config: SamConfig,
  missing: string[],
  unexpected: string[],
  mismatched: string[],
  hints: string[],
  action: string,
): CheckpointError {
  const counts = [
    missing.length && `${missing.length} missing`,
    unexpected.length && `${unexpected.length} unexpected`,
    mismatched.length && `${mismatched.length} mismatched`,
  ].filter(Boolean);
  const lines = [`${where} does not match its config (${describeConfig(config)}): ${counts.join(', ')} key(s).`];
  if (missing.length) lines.push(`  missing (${missing.length}): ${listCapped(missing)}`);
  if (unexpected.length) lines.push(`  unexpected (${unexpected.length}): ${listCapped(unexpected)}`);
  if (mismatched.length) lines.push(`  mismatched (${mismatched.length}): ${listCapped(mismatched)}`);
  lines.push(...hints.map((h) => `  ${h}`));
  lines.push(`  ${action}`);
  return new CheckpointError(lines.join('\n'), missing, unexpected, mismatched);
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

// ---------------------------------------------------------------------------------------------------------------
// saving

export interface SaveSamCheckpointOptions {
  /** 'mask_decoder': write only mask_decoder.* (a decoder-only folder). */
  only?: 'mask_decoder';
  /** Store float32 weights as F16. */
  float16?: boolean;
}

/**
 * Write a SamModel.save_pretrained-style folder: config.json + model.safetensors (HF names, without the tied
 * TIED_POS_EMBED_KEY). Every part present in `weights` must be complete and match the config. Atomic per file:
 * everything is written and fsynced in a temp folder next to `dir`, then renamed into place.
 */
export async function saveSamCheckpoint(
  dir: string,
  config: SamConfig,
  weights: Map<string, HostTensor>,
  opts: SaveSamCheckpointOptions = {},
): Promise<void> {
  const expected = expectedSamParameters(config);
  const out = new Map<string, HostTensor>();
  const unexpected: string[] = [];
  const mismatched: string[] = [];
  const partsPresent = new Set<SamPart>();
  for (const [name, t] of weights) {
    const part = samPartOf(name);
    if (opts.only && part !== opts.only) continue;
    if (name === TIED_POS_EMBED_KEY) {
      // Saved under the shared name only (as save_pretrained does).
      if (!weights.has(SHARED_POS_EMBED_KEY)) partsPresent.add('shared_image_embedding');
      continue;
    }
    const shape = expected.get(name);
    if (!shape || !part) {
      unexpected.push(name);
      continue;
    }
    partsPresent.add(part);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      mismatched.push(`${name}: [${t.shape.join(', ')}] vs config [${shape.join(', ')}]`);
    } else if (t.dtype !== 'float32') {
      mismatched.push(`${name}: dtype ${t.dtype}, expected float32`);
    }
    out.set(name, t);
  }
  if (partsPresent.has('shared_image_embedding') && !out.has(SHARED_POS_EMBED_KEY)) {
    const t = weights.get(TIED_POS_EMBED_KEY)!;
    const shape = expected.get(SHARED_POS_EMBED_KEY)!;
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      mismatched.push(`${TIED_POS_EMBED_KEY}: [${t.shape.join(', ')}] vs config [${shape.join(', ')}]`);
    }
    out.set(SHARED_POS_EMBED_KEY, t);
  }
  if (opts.only) partsPresent.add(opts.only);
  const missing: string[] = [];
  for (const name of expected.keys()) {
    if (name === TIED_POS_EMBED_KEY) continue;
    if (partsPresent.has(samPartOf(name)!) && !out.has(name)) missing.push(name);
  }
  if (out.size === 0 && missing.length === 0) throw new CheckpointError(`saveSamCheckpoint(${dir}): no weights to save`);
  if (missing.length || unexpected.length || mismatched.length) {
    throw mismatchError(`weights to save into ${dir}`, config, missing, unexpected, mismatched, [], 'Pass complete parts (every parameter of each part present) with the shapes of this config.');
  }

  const target = resolve(dir);
  const parent = dirname(target);
  await mkdir(parent, { recursive: true });
  const tmp = await mkdtemp(join(parent, `.${basename(target)}.tmp-`));
  try {
    const json = samConfigToJson(config);
    if (opts.float16) json.torch_dtype = 'float16';
    await writeFileAtomic(join(tmp, 'config.json'), JSON.stringify(json, null, 2) + '\n');
    await writeSafetensors(join(tmp, 'model.safetensors'), out, { metadata: { format: 'pt' }, float16: opts.float16 }); // fsyncs tmp
    let moved = false;
    if (!(await pathExists(target))) {
      try {
        await rename(tmp, target);
        moved = true;
      } catch {
        // created concurrently: fall back to moving the files
      }
    }
    if (!moved) {
      const staleIndex = join(target, 'model.safetensors.index.json');
      const staleShards = await shardNames(staleIndex);
      await rename(join(tmp, 'model.safetensors'), join(target, 'model.safetensors'));
      await rename(join(tmp, 'config.json'), join(target, 'config.json'));
      // A previous sharded save would shadow nothing (model.safetensors wins) but is stale: remove it.
      if (staleShards) {
        await unlink(staleIndex).catch(() => undefined);
        for (const s of staleShards) if (s !== 'model.safetensors') await unlink(join(target, s)).catch(() => undefined);
      }
    }
    await fsyncDir(target);
    await fsyncDir(parent);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}


async function shardNames(indexPath: string): Promise<string[] | undefined> {
  try {
    const index = JSON.parse(await readFile(indexPath, 'utf8')) as { weight_map?: Record<string, string> };
    return [...new Set(Object.values(index.weight_map ?? {}))].filter((s) => typeof s === 'string' && !s.includes('/') && !s.includes('\\'));
  } catch {
    return undefined;
  }
}


// ---------------------------------------------------------------------------------------------------------------
// hashing

/**
 * Order-independent, streaming sha256 over named tensors: each tensor is hashed on its own (name, dtype, shape,
 * raw little-endian bytes), then the sorted (name, digest) list is hashed. Feed tensors as they are read.
 */
export class WeightsHasher {
  private readonly digests = new Map<string, string>();

  add(name: string, t: HostTensor): this {
    const h = createHash('sha256');
    h.update(`${name}\0${t.dtype}\0${t.shape.join(',')}\0`);
    h.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    this.digests.set(name, h.digest('hex'));
    return this;
  }

  get size(): number {
    return this.digests.size;
  }

  digest(): string {
    const h = createHash('sha256');
    h.update('fedsam-weights-v1\n');
    for (const name of [...this.digests.keys()].sort()) h.update(`${name}\t${this.digests.get(name)}\n`);
    return h.digest('hex');
  }
}

/**
 * Stable sha256 (hex) of the tensors whose name starts with `prefix` (e.g. 'vision_encoder.'): names, dtypes,
 * shapes and values. Independent of map order. With no tensor under the prefix it is the (fixed) empty-set hash.
 */
export function hashWeights(weights: Map<string, HostTensor>, prefix = ''): string {
  const hasher = new WeightsHasher();
  for (const [name, t] of weights) if (name.startsWith(prefix)) hasher.add(name, t);
  return hasher.digest();
}
