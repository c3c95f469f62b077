// ONNX Runtime (onnxruntime-node) for FedSAM's inference: loading the native binding (it may be missing or fail
// to load on a platform without prebuilt binaries: the caller falls back to tfjs), and the session options the SAM
// graphs run with. Why these options (measured in bench/README.md):
//   - graph optimisation 'all': constant folding of the weight layouts, Gemm pre-packing, NCHWc convolutions;
//   - intra-op threads = the machine's cores, inter-op 1 (the graphs are one chain), spinning allowed;
//   - the first run of a session used to be ~1.6x the steady time (the ORT export of the encoder: ~3x for each of
//     its first two runs). Run 1 grows the memory arena, and every fresh 4 KB page costs a fault (~200,000 for
//     ViT-B, ~25 us each in this VM); run 2 allocated the block that ORT's memory pattern planned from run 1 (more
//     fresh pages, +0.55 GB RSS). So: no memory pattern (the arena's chunks are reused as they are), and
//     bin/fedsam.mjs runs node with GLIBC_TUNABLES=glibc.malloc.hugetlb=1, which lets glibc's malloc put the
//     arena on transparent huge pages (~3,000 faults). No warm-up run is needed (it would cost a whole image).
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import type * as Ort from 'onnxruntime-node';

export type OrtModule = typeof Ort;
export type OrtSession = Ort.InferenceSession;
export type OrtTensor = Ort.Tensor;

const require = createRequire(import.meta.url);
let loaded: { ort?: OrtModule; error?: string } | undefined;

/** FEDSAM_ORT_MODULE names another module to load instead of onnxruntime-node (tests use it to make loading fail). */
export function loadOrt(): { ort?: OrtModule; error?: string } {
  if (loaded) return loaded;
  const spec = process.env.FEDSAM_ORT_MODULE || 'onnxruntime-node';
  try {
    const ort = require(spec) as OrtModule;
    if (typeof ort.InferenceSession?.create !== 'function') throw new Error(`${spec} does not export InferenceSession`);
    loaded = { ort };
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    loaded = { error: msg.includes('Cannot find module') ? `${spec} is not installed` : `${spec} failed to load: ${msg}` };
  }
  return loaded;
}

export function ortVersion(): string | undefined {
  return loadOrt().ort?.env.versions?.node;
}

/** Intra-op threads: FEDSAM_ORT_THREADS, else every core. */
export function ortThreads(): number {
  const env = Number(process.env.FEDSAM_ORT_THREADS);
  return Number.isInteger(env) && env > 0 ? env : Math.max(1, availableParallelism());
}

let extraOptions: Record<string, unknown> = {};
/** Extra session options merged over the defaults (bench/encoder.ts --ort-options, for experiments). */
export function setExtraSessionOptions(o: Record<string, unknown>): void {
  extraOptions = o;
}

export function sessionOptions(o: { threads?: number } = {}): Ort.InferenceSession.SessionOptions {
  return {
    ...baseOptions(o),
    ...extraOptions,
  };
}

function baseOptions(o: { threads?: number }): Ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: o.threads ?? ortThreads(),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    enableCpuMemArena: true,
    enableMemPattern: false,
    logSeverityLevel: 3,
    extra: { session: { intra_op: { allow_spinning: '1' } } },
  };
}

export class OrtLoadError extends Error {
  override name = 'OrtLoadError';
}

/** Create a session from a file or an in-memory model; errors say which model could not be loaded. */
export async function createSession(model: string | Uint8Array, what: string, o: { threads?: number } = {}): Promise<OrtSession> {
  const { ort, error } = loadOrt();
  if (!ort) throw new OrtLoadError(`ONNX Runtime is not available: ${error}`);
  try {
    return await ort.InferenceSession.create(model as string, sessionOptions(o));
  } catch (e) {
    throw new OrtLoadError(`ONNX Runtime could not load ${what}: ${(e as Error).message.split('\n')[0]}`);
  }
}

/** A float32 / int64 tensor for a session input. */
export function f32(data: Float32Array, dims: readonly number[]): OrtTensor {
  return new (loadOrt().ort!.Tensor)('float32', data, dims);
}

export function i64(data: ArrayLike<number>, dims: readonly number[]): OrtTensor {
  return new (loadOrt().ort!.Tensor)('int64', BigInt64Array.from(Array.from(data, (v) => BigInt(v))), dims);
}
