// Manifests: the names, dtypes and shapes of a transfer's tensors in payload order, checked against the layout the
// receiver expects before any payload byte is read.
import { hostTensorNumel, type HostTensor } from '../safetensors.ts';
import { CHECKSUM_ALGORITHM, CHECKSUM_ALGORITHMS, type ChecksumAlgorithm } from './checksum.ts';
import { TransferError } from './errors.ts';
import type { WireDtype, WireManifest, WireTensorSpec } from './messages.ts';

export function dtypeBytes(d: WireDtype): number {
  return d === 'F32' ? 4 : 2;
}

/** Values in a tensor of this shape. */
export const numel = (shape: readonly number[]): number => hostTensorNumel({ shape: shape as number[] });

/** Manifest of float32 host tensors sent as `dtype` (in the map's iteration order). */
export function buildManifest(tensors: Map<string, HostTensor>, dtype: WireDtype = 'F32', checksum: ChecksumAlgorithm = CHECKSUM_ALGORITHM): WireManifest {
  for (const [name, t] of tensors) {
    if (t.dtype !== 'float32') throw new TransferError('manifest', `tensor "${name}" is ${t.dtype}; only float32 tensors travel`);
    if (t.data.length !== numel(t.shape)) {
      throw new TransferError('manifest', `tensor "${name}" has ${t.data.length} elements but shape [${t.shape.join(', ')}]`);
    }
  }
  return manifestOfLayout(layoutOf(tensors), dtype, checksum);
}

/** Manifest of tensors with these names and shapes sent as `dtype` (no values needed). */
export function manifestOfLayout(layout: TensorLayout, dtype: WireDtype = 'F32', checksum: ChecksumAlgorithm = CHECKSUM_ALGORITHM): WireManifest {
  const specs: WireTensorSpec[] = [];
  let total = 0;
  for (const [name, shape] of layout) {
    specs.push({ name, dtype, shape: [...shape] });
    total += numel(shape) * dtypeBytes(dtype);
  }
  return { tensors: specs, total_bytes: total, checksum_algorithm: checksum };
}

/** Layout spec: names -> shapes (what a decoder looks like). */
export type TensorLayout = Map<string, number[]>;

export function layoutOf(tensors: Map<string, HostTensor>): TensorLayout {
  return new Map([...tensors].map(([n, t]) => [n, [...t.shape]]));
}

export function layoutFromManifest(m: WireManifest): TensorLayout {
  return new Map(m.tensors.map((t) => [t.name, t.shape.map(Number)]));
}

export const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/** Why a manifest or a layout is refused (the server's refusal reason and metrics label). */
export type ManifestProblemReason = 'bad_manifest' | 'bad_shape' | 'bad_dtype' | 'too_large';

export interface ManifestProblem {
  reason: ManifestProblemReason;
  message: string;
}

const problem = (reason: ManifestProblemReason, message: string): ManifestProblem => ({ reason, message });

/**
 * Check a received manifest against the expected layout: same names (no missing, no extra, no duplicates), same
 * shapes, an allowed dtype, a consistent total_bytes within `maxBytes`. Returns the problem or undefined.
 */
export function checkManifest(m: WireManifest | null | undefined, expected: TensorLayout, opts: { allowedDtypes?: WireDtype[]; maxBytes?: number } = {}): ManifestProblem | undefined {
  if (!m) return problem('bad_manifest', 'missing manifest');
  const allowed = opts.allowedDtypes ?? ['F32', 'F16'];
  const seen = new Set<string>();
  let total = 0;
  for (const t of m.tensors) {
    if (seen.has(t.name)) return problem('bad_manifest', `tensor "${t.name}" appears twice`);
    seen.add(t.name);
    const want = expected.get(t.name);
    if (!want) return problem('bad_manifest', `unexpected tensor "${t.name}" (not a tensor of the global mask decoder)`);
    const shape = t.shape.map(Number);
    if (!sameShape(shape, want)) return problem('bad_shape', `tensor "${t.name}" has shape [${shape.join(', ')}], expected [${want.join(', ')}]`);
    if (!allowed.includes(t.dtype as WireDtype)) return problem('bad_dtype', `tensor "${t.name}" has dtype ${t.dtype}, expected one of ${allowed.join(', ')}`);
    total += numel(shape) * dtypeBytes(t.dtype as WireDtype);
  }
  for (const name of expected.keys()) if (!seen.has(name)) return problem('bad_manifest', `tensor "${name}" is missing`);
  if (Number(m.total_bytes) !== total) return problem('bad_manifest', `total_bytes ${m.total_bytes} does not match the tensors (${total} bytes)`);
  const alg = m.checksum_algorithm || 'sha256';
  if (!(CHECKSUM_ALGORITHMS as readonly string[]).includes(alg)) return problem('bad_manifest', `unsupported checksum algorithm "${alg}" (use ${CHECKSUM_ALGORITHMS.join(' or ')})`);
  if (opts.maxBytes !== undefined && total > opts.maxBytes) return problem('too_large', `payload of ${total} bytes exceeds the limit of ${opts.maxBytes} bytes`);
  return undefined;
}

/** Same names and shapes (in any order), else the first difference. */
export function sameLayout(a: TensorLayout, b: TensorLayout): ManifestProblem | undefined {
  for (const [name, shape] of b) {
    const s = a.get(name);
    if (!s) return problem('bad_manifest', `tensor "${name}" is missing`);
    if (!sameShape(s, shape)) return problem('bad_shape', `tensor "${name}" has shape [${s.join(', ')}], expected [${shape.join(', ')}]`);
  }
  for (const name of a.keys()) if (!b.has(name)) return problem('bad_manifest', `unexpected tensor "${name}"`);
  return undefined;
}
