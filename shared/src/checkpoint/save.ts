// Saving a SamModel.save_pretrained-style folder (config.json + model.safetensors, HF names), atomically.
import { mkdir, mkdtemp, readFile, rename, rm, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { samConfigToJson, type SamConfig } from '../config.ts';
import { pathExists, writeFileAtomic } from '../fsutil.ts';
import { fsyncDir, writeSafetensors, type HostTensor } from '../safetensors.ts';
import { CheckpointError, mismatchError } from './errors.ts';
import { expectedSamParameters, samPartOf, SHARED_POS_EMBED_KEY, TIED_POS_EMBED_KEY, type SamPart } from './keys.ts';

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
