// On-disk cache of built ONNX graphs: <dir>/<key>/model.onnx + model.onnx.data + complete.json, keyed by the
// weights' hash, the builder version and the build options. A graph is built in a temporary sibling folder and
// renamed into place (atomic), so a killed build leaves no half graph under a real key; complete.json records the
// file sizes and is checked on every load, and a graph ONNX Runtime cannot load is removed and rebuilt once.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import type { GraphBuilder } from './graph.ts';
import { createSession, OrtLoadError, type OrtSession } from './runtime.ts';

/** Bump when a builder changes what it writes: old cache entries are then never read. */
export const BUILDER_VERSION = 'fedsam-onnx-2';

export function defaultGraphCacheDir(): string {
  if (process.env.FEDSAM_ONNX_CACHE) return resolve(process.env.FEDSAM_ONNX_CACHE);
  const base = process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache');
  return join(base, 'fedsam', 'onnx');
}

export function graphKey(kind: string, weightsHash: string, options: unknown): string {
  return createHash('sha256').update(JSON.stringify({ v: BUILDER_VERSION, kind, weightsHash, options })).digest('hex').slice(0, 32);
}

interface Complete { modelBytes: number; dataBytes: number; builder: string }

async function isComplete(folder: string): Promise<boolean> {
  try {
    const c = JSON.parse(await readFile(join(folder, 'complete.json'), 'utf8')) as Complete;
    const [m, d] = await Promise.all([stat(join(folder, 'model.onnx')), stat(join(folder, 'model.onnx.data'))]);
    return c.builder === BUILDER_VERSION && m.size === c.modelBytes && d.size === c.dataBytes;
  } catch {
    return false;
  }
}

export interface CachedGraphEvent { event: 'hit' | 'built' | 'invalid' | 'rebuilt'; key: string; seconds?: number; reason?: string }

/**
 * A session for the graph `key`: from the cache when a complete copy loads, else built with `build()` (called only
 * then), written atomically, and loaded. A copy that is incomplete or that ORT rejects is removed and rebuilt once.
 */
export async function cachedGraphSession(dir: string, key: string, what: string, build: () => GraphBuilder,
  o: { threads?: number; onEvent?: (e: CachedGraphEvent) => void } = {}): Promise<OrtSession> {
  const folder = join(dir, key);
  const model = join(folder, 'model.onnx');
  let reason: string | undefined;
  if (await isComplete(folder)) {
    try {
      const s = await createSession(model, `${what} (${model})`, o);
      o.onEvent?.({ event: 'hit', key });
      return s;
    } catch (e) {
      if (!(e instanceof OrtLoadError)) throw e;
      reason = e.message;
    }
  } else if (await stat(folder).then(() => true, () => false)) {
    reason = 'incomplete or corrupt cache entry';
  }
  if (reason) {
    o.onEvent?.({ event: 'invalid', key, reason });
    await rm(folder, { recursive: true, force: true });
  }
  const t0 = performance.now();
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${key}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(tmp);
  try {
    const g = build();
    const sizes = await g.writeWithExternalData(join(tmp, 'model.onnx'), join(tmp, 'model.onnx.data'));
    const complete: Complete = { ...sizes, builder: BUILDER_VERSION };
    await writeFile(join(tmp, 'complete.json'), JSON.stringify(complete) + '\n');
    try {
      await rename(tmp, folder);
    } catch (e) {
      // another process finished the same graph first: use theirs
      if (!(await isComplete(folder))) throw e;
      await rm(tmp, { recursive: true, force: true });
    }
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  o.onEvent?.({ event: reason ? 'rebuilt' : 'built', key, seconds: (performance.now() - t0) / 1000 });
  return createSession(model, `${what} (${model})`, o);
}
