// Named-tensor transfer codec for the FedSAM wire protocol (proto/fedsam.proto).
//
// A transfer = manifest (name, dtype, shape of each tensor, in payload order) + payload (the tensors' raw
// little-endian bytes concatenated in manifest order, float32 or float16) + sha256 of the payload. The payload is
// cut into chunks of at most `chunkBytes` (1 MiB by default) so that no gRPC message comes near the default 4 MiB
// limit. The receiver writes chunks straight into one preallocated buffer; float32 tensors are views of it.
//
// This module is transport-free (no gRPC import): it also holds the TypeScript shapes of the wire messages as
// @grpc/proto-loader decodes them with PROTO_LOADER_OPTIONS, shared by the server and the client daemon.
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as zlib from 'node:zlib';
import { hashWeights } from './checkpoint.ts';
import { float16ArrayToFloat32, float32ArrayToFloat16, hostTensorNumel, type HostTensor } from './safetensors.ts';

export const PROTO_PATH = fileURLToPath(new URL('../../proto/fedsam.proto', import.meta.url));
/** Options for @grpc/proto-loader's loadSync: snake_case fields, uint64 as number, enums as strings, oneof names. */
export const PROTO_LOADER_OPTIONS = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true } as const;
export const SERVICE_NAME = 'fedsam.v1.FedSam';

export const DEFAULT_CHUNK_BYTES = 1 << 20;
/** Hard ceiling for one chunk (well under gRPC's 4 MiB default message limit). */
export const MAX_CHUNK_BYTES = 2 << 20;
// The checksum guards the reassembly against corruption; authenticity comes from TLS and the site token. Per
// 16 MiB here: xxh3 1.2 ms, crc32 3.9 ms, sha256 ~15 ms.
//   xxh3   XXH3-64, seed 0, 8 bytes big-endian: @node-rs/xxhash (native; an optional dependency)
//   crc32  IEEE, 4 bytes big-endian: zlib's, in Node >= 20.15
//   sha256 always there
// A sender uses the first algorithm of the receiver's list (JoinResponse / DownloadRequest .checksum_algorithms)
// that it can compute, so either side may lack xxh3.
export type ChecksumAlgorithm = 'xxh3' | 'crc32' | 'sha256';
const zlibCrc32 = (zlib as unknown as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;
interface Xxh3Hasher { update(d: Uint8Array): unknown; digest(): bigint }
const Xxh3 = ((): { withSeed(): Xxh3Hasher } | undefined => {
  try {
    return (createRequire(import.meta.url)('@node-rs/xxhash') as { xxh3: { Xxh3: { withSeed(): Xxh3Hasher } } }).xxh3.Xxh3;
  } catch {
    return undefined; // not installed for this platform
  }
})();
/** What a sender uses when the receiver has not said what it takes (a peer from before xxh3). */
export const CHECKSUM_ALGORITHM: ChecksumAlgorithm = zlibCrc32 ? 'crc32' : 'sha256';
/** What this side can compute and verify, fastest first (what it announces to peers). */
export const CHECKSUM_ALGORITHMS: readonly ChecksumAlgorithm[] = [...(Xxh3 ? ['xxh3' as const] : []), ...(zlibCrc32 ? ['crc32' as const] : []), 'sha256'];

/**
 * The first of the receiver's algorithms (its preference first) the sender can compute (`senderHas`, default: all
 * this side has); without a common one, or without a list, the default.
 */
export function pickChecksum(receiverAccepts: readonly string[] | undefined, senderHas: readonly string[] = CHECKSUM_ALGORITHMS): ChecksumAlgorithm {
  for (const a of receiverAccepts ?? []) if (senderHas.includes(a) && (CHECKSUM_ALGORITHMS as readonly string[]).includes(a)) return a as ChecksumAlgorithm;
  return CHECKSUM_ALGORITHM;
}

export interface Checksum {
  update(data: Uint8Array): void;
  digest(): Uint8Array;
}

export function createChecksum(algorithm: string): Checksum {
  if (algorithm === 'sha256' || algorithm === '') {
    const h = createHash('sha256');
    return { update: (d) => void h.update(d), digest: () => new Uint8Array(h.digest()) };
  }
  if (algorithm === 'xxh3' && Xxh3) {
    const h = Xxh3.withSeed();
    return {
      update: (d) => void h.update(d),
      digest: () => {
        const out = new Uint8Array(8);
        new DataView(out.buffer).setBigUint64(0, h.digest(), false);
        return out;
      },
    };
  }
  if (algorithm === 'crc32' && zlibCrc32) {
    let c = 0;
    return {
      update: (d) => void (c = zlibCrc32(d, c)),
      digest: () => {
        const out = new Uint8Array(4);
        new DataView(out.buffer).setUint32(0, c >>> 0, false);
        return out;
      },
    };
  }
  throw new TransferError('checksum', `unsupported checksum algorithm "${algorithm}" (this side knows ${CHECKSUM_ALGORITHMS.join(', ')})`);
}

export const METADATA_AUTHORIZATION = 'authorization';
export const METADATA_SESSION = 'x-fedsam-session';

// ---------------------------------------------------------------------------------------------------------------
// wire message shapes (as proto-loader decodes them; encoding accepts the same shapes)

export type WireDtype = 'F32' | 'F16';
export type WireDtypeField = WireDtype | 'DTYPE_UNSPECIFIED';

export interface WireTensorSpec { name: string; dtype: WireDtypeField; shape: number[] }
export interface WireManifest { tensors: WireTensorSpec[]; total_bytes: number; checksum_algorithm?: string }
export interface WireChunk { offset: number; data: Uint8Array }
export interface WireTrailer { checksum_algorithm: string; checksum: Uint8Array }

export interface JoinRequest { site: string; base_model_hash: string; decoder: WireManifest | null; client_version: string }
export interface JoinResponse {
  session_id: string; site: string; heartbeat_interval_ms: number; current_round: number; long_poll_ms: number;
  /** Checksums the server verifies on uploads, preferred first (empty from a server before xxh3). */
  checksum_algorithms?: string[];
}
export interface HeartbeatResponse { current_round: number }
export interface GetTaskRequest { wait_ms: number }
export interface WireFitConfig {
  epochs: number; lr: number; batch_size: number; proximal_mu: number; seed: number; params: Record<string, number>;
  points_positive?: number; points_negative?: number;
}
export interface Task {
  task_id: string;
  round: number;
  global_version: string;
  kind?: 'fit' | 'evaluate' | 'idle' | 'shutdown';
  fit?: { config: WireFitConfig | null } | null;
  evaluate?: Record<string, never> | null;
  idle?: Record<string, never> | null;
  shutdown?: { reason: string } | null;
}
export interface DownloadRequest {
  dtype: WireDtypeField; expected_version: string;
  /** Checksums the site verifies, preferred first (empty: the server's default). */
  checksum_algorithms?: string[];
}
export interface GlobalHeader { round: number; version: string; manifest: WireManifest | null }
export interface DownloadFrame { frame?: 'header' | 'chunk' | 'trailer'; header?: GlobalHeader | null; chunk?: WireChunk | null; trailer?: WireTrailer | null }
export interface UpdateHeader { task_id: string; round: number; num_examples: number; metrics: Record<string, number>; manifest: WireManifest | null }
export interface UpdateFrame { frame?: 'header' | 'chunk' | 'trailer'; header?: UpdateHeader | null; chunk?: WireChunk | null; trailer?: WireTrailer | null }
export interface SubmitResponse { accepted: boolean; message: string }
export interface EvaluationResult { task_id: string; round: number; num_examples: number; metrics: Record<string, number> }
export interface AbandonRequest { task_id: string; reason: string }
export interface LeaveRequest { reason: string }

// ---------------------------------------------------------------------------------------------------------------
// errors

export type TransferErrorKind = 'manifest' | 'order' | 'size' | 'checksum' | 'incomplete' | 'nonfinite';

export class TransferError extends Error {
  override name = 'TransferError';
  constructor(readonly kind: TransferErrorKind, message: string) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// manifests

export function dtypeBytes(d: WireDtype): number {
  return d === 'F32' ? 4 : 2;
}

const numel = (shape: readonly number[]): number => hostTensorNumel({ shape: shape as number[] });

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

// ---------------------------------------------------------------------------------------------------------------
// encoding

export interface EncodedTransfer {
  manifest: WireManifest;
  /** The whole payload (tensors' bytes concatenated in manifest order). */
  payload: Uint8Array;
  /** Checksum of the payload (manifest.checksum_algorithm). */
  checksum: Uint8Array;
}

/**
 * One float32 view over arrays that lie back to back in one buffer in this order (the tensors of a decoded payload
 * or of a FedAvg mean), else undefined.
 */
export function backToBack(parts: readonly Float32Array[]): Float32Array | undefined {
  const head = parts[0];
  if (!head) return undefined;
  let end = head.byteOffset + head.byteLength;
  for (let i = 1; i < parts.length; i++) {
    const x = parts[i]!;
    if (x.buffer !== head.buffer || x.byteOffset !== end) return undefined;
    end += x.byteLength;
  }
  return new Float32Array(head.buffer, head.byteOffset, (end - head.byteOffset) / 4);
}

/**
 * Encode float32 tensors as one payload in `dtype` (F16: round to nearest even) plus its checksum.
 * `opts.view`: for F32 tensors already back to back in one buffer, the payload is a view of it, not a copy; only
 * for tensors nothing writes to afterwards (the server's global), never for a payload that gets reused.
 */
export function encodeTransfer(
  tensors: Map<string, HostTensor>, dtype: WireDtype = 'F32', algorithm: ChecksumAlgorithm = CHECKSUM_ALGORITHM, opts: { view?: boolean } = {},
): EncodedTransfer {
  const manifest = buildManifest(tensors, dtype, algorithm);
  const flat = opts.view && dtype === 'F32' ? backToBack([...tensors.values()].map((t) => t.data as Float32Array)) : undefined;
  if (flat) {
    const payload = new Uint8Array(flat.buffer, flat.byteOffset, flat.byteLength);
    const sum = createChecksum(algorithm);
    sum.update(payload);
    return { manifest, payload, checksum: sum.digest() };
  }
  const payload = new Uint8Array(manifest.total_bytes);
  let pos = 0;
  for (const spec of manifest.tensors) {
    const src = tensors.get(spec.name)!.data as Float32Array;
    if (dtype === 'F32') {
      payload.set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength), pos);
      pos += src.byteLength;
    } else {
      // pos is even (every tensor is a whole number of halves): a Uint16Array view is aligned.
      float32ArrayToFloat16(src, new Uint16Array(payload.buffer, payload.byteOffset + pos, src.length));
      pos += src.length * 2;
    }
  }
  const sum = createChecksum(algorithm);
  sum.update(payload);
  return { manifest, payload, checksum: sum.digest() };
}

/** Chunks of a payload (views, no copies), each at most chunkBytes. */
export function* payloadChunks(payload: Uint8Array, chunkBytes = DEFAULT_CHUNK_BYTES): Generator<WireChunk> {
  if (!(chunkBytes > 0 && chunkBytes <= MAX_CHUNK_BYTES)) throw new TransferError('size', `chunk size ${chunkBytes} out of range (1..${MAX_CHUNK_BYTES})`);
  for (let off = 0; off < payload.length; off += chunkBytes) {
    yield { offset: off, data: payload.subarray(off, Math.min(payload.length, off + chunkBytes)) };
  }
}

export function trailerFor(checksum: Uint8Array, algorithm: string = CHECKSUM_ALGORITHM): WireTrailer {
  return { checksum_algorithm: algorithm, checksum };
}

/** The trailer of an encoded transfer. */
export function trailerOf(enc: EncodedTransfer): WireTrailer {
  return trailerFor(enc.checksum, enc.manifest.checksum_algorithm || 'sha256');
}

// ---------------------------------------------------------------------------------------------------------------
// decoding

export interface TransferDecoderOptions {
  /** Largest chunk accepted (default MAX_CHUNK_BYTES). */
  maxChunkBytes?: number;
  /**
   * Refuse non-finite values (NaN, +-Infinity) as the chunks arrive, so that the check costs no time after the
   * last chunk and a bad update is refused mid-stream. finish() then returns tensors known to be finite.
   */
  checkFinite?: boolean;
  /** Receive into this buffer (at least manifest.total_bytes long, e.g. from a pool) instead of a new one. */
  into?: Uint8Array;
  /**
   * The finite check's scan (index of the first non-finite among `count` values at byte `at` of the payload, or
   * -1); the server's runs in WebAssembly over its receive buffers. Default: a JS loop.
   */
  scanFinite?: (payload: Uint8Array, at: number, count: number, dtype: WireDtype) => number;
}

interface Segment {
  name: string;
  dtype: WireDtype;
  start: number;
  end: number;
}

/**
 * Receives one transfer: construct with a manifest already validated (checkManifest), push chunks in order, then
 * finish with the trailer. Memory: one buffer of manifest.total_bytes (+ the float32 copy for F16 tensors).
 */
export class TransferDecoder {
  private readonly payload: Uint8Array;
  private received = 0;
  private readonly hash: Checksum;
  private readonly algorithm: string;
  private readonly maxChunkBytes: number;
  /** Tensors' byte ranges, for the finite check (undefined when it is off). */
  private readonly segments: Segment[] | undefined;
  private scanned = 0;
  private segment = 0;
  private readonly scan: (payload: Uint8Array, at: number, count: number, dtype: WireDtype) => number;

  constructor(readonly manifest: WireManifest, o: TransferDecoderOptions = {}) {
    this.maxChunkBytes = o.maxChunkBytes ?? MAX_CHUNK_BYTES;
    const total = Number(manifest.total_bytes);
    if (!Number.isSafeInteger(total) || total < 0) throw new TransferError('manifest', `invalid total_bytes ${manifest.total_bytes}`);
    this.algorithm = manifest.checksum_algorithm || 'sha256';
    this.hash = createChecksum(this.algorithm);
    if (o.into && o.into.length < total) throw new TransferError('size', `receive buffer of ${o.into.length} bytes is smaller than the ${total}-byte payload`);
    this.payload = o.into ? o.into.subarray(0, total) : new Uint8Array(total);
    this.scan = o.scanFinite ?? firstNonFinite;
    if (o.checkFinite) {
      this.segments = [];
      let pos = 0;
      for (const t of manifest.tensors) {
        const dtype = t.dtype as WireDtype;
        const end = pos + numel(t.shape.map(Number)) * dtypeBytes(dtype);
        this.segments.push({ name: t.name, dtype, start: pos, end });
        pos = end;
      }
    }
  }

  get bytesReceived(): number {
    return this.received;
  }

  push(chunk: WireChunk | null | undefined): void {
    if (!chunk) throw new TransferError('order', 'empty chunk frame');
    const data = chunk.data;
    if (Number(chunk.offset) !== this.received) {
      throw new TransferError('order', `chunk at offset ${chunk.offset} but ${this.received} bytes were received so far (chunks must come in order)`);
    }
    if (data.length > this.maxChunkBytes) throw new TransferError('size', `chunk of ${data.length} bytes exceeds the ${this.maxChunkBytes}-byte chunk limit`);
    if (this.received + data.length > this.payload.length) {
      throw new TransferError('size', `payload exceeds the ${this.payload.length} bytes announced in the manifest`);
    }
    copyInto(this.payload, data, this.received);
    this.hash.update(data);
    this.received += data.length;
    if (this.segments) this.scanFinite();
  }

  /** Check the values completed since the last scan (whole elements only). */
  private scanFinite(): void {
    const segs = this.segments!;
    const p = this.payload;
    while (this.segment < segs.length) {
      const s = segs[this.segment]!;
      const size = s.dtype === 'F32' ? 4 : 2;
      const from = Math.max(this.scanned, s.start);
      const to = Math.min(this.received, s.end);
      const first = (from - s.start) / size; // whole: scans stop on element boundaries
      const count = Math.floor((to - from) / size);
      if (count > 0) {
        const bad = this.scan(p, from, count, s.dtype);
        if (bad >= 0) {
          const at = from + bad * size;
          const value = s.dtype === 'F32' ? new DataView(p.buffer, p.byteOffset).getFloat32(at, true) : f16Special(new DataView(p.buffer, p.byteOffset).getUint16(at, true));
          throw new TransferError('nonfinite', `tensor "${s.name}" has a non-finite value (${value}) at index ${first + bad}`);
        }
      }
      this.scanned = from + count * size;
      if (this.scanned < s.end) return; // wait for more bytes
      this.segment++;
    }
  }

  /** Verify length and checksum; returns float32 tensors in manifest order. */
  finish(trailer: WireTrailer | null | undefined): Map<string, HostTensor> {
    if (this.received !== this.payload.length) {
      throw new TransferError('incomplete', `transfer ended after ${this.received} of ${this.payload.length} bytes`);
    }
    if (!trailer) throw new TransferError('checksum', 'missing trailer (checksum)');
    if ((trailer.checksum_algorithm || 'sha256') !== this.algorithm) {
      throw new TransferError('checksum', `trailer checksum algorithm "${trailer.checksum_algorithm}" differs from the manifest's "${this.algorithm}"`);
    }
    const digest = Buffer.from(this.hash.digest());
    const got = Buffer.from(trailer.checksum.buffer, trailer.checksum.byteOffset, trailer.checksum.byteLength);
    if (!digest.equals(got)) {
      throw new TransferError('checksum', `checksum mismatch: payload ${this.algorithm} ${digest.toString('hex')}, trailer says ${got.toString('hex') || '(empty)'}`);
    }
    return decodePayload(this.manifest, this.payload);
  }
}

let staging: Uint8Array | undefined;

/**
 * dst.set(src, at), but through a staging buffer when dst is shared memory and the two are not 8-byte aligned
 * alike: V8 then copies byte by byte (~12 ms per 16 MiB here against ~2 ms staged). Chunk data inside a decoded
 * protobuf message usually starts at an odd offset, and the server receives into a shared WebAssembly memory.
 */
function copyInto(dst: Uint8Array, src: Uint8Array, at: number): void {
  const shared = typeof SharedArrayBuffer !== 'undefined' && dst.buffer instanceof SharedArrayBuffer;
  if (!shared || (dst.byteOffset + at - src.byteOffset) % 8 === 0) {
    dst.set(src, at);
    return;
  }
  if (!staging || staging.length < src.length) staging = new Uint8Array(Math.max(src.length, 1 << 20));
  const s = staging.subarray(0, src.length);
  s.set(src);
  dst.set(s, at);
}

/** Index of the first NaN / +-Infinity among `count` little-endian values of `dtype` at byte `at` of `p`, or -1. */
export function firstNonFinite(p: Uint8Array, at: number, count: number, dtype: WireDtype): number {
  return dtype === 'F32' ? firstNonFiniteF32(p, at, count) : firstNonFiniteF16(p, at, count);
}

/** Index of the first NaN / +-Infinity among `count` little-endian float32 values at byte `at`, or -1. */
function firstNonFiniteF32(p: Uint8Array, at: number, count: number): number {
  // On the bits: exponent all ones (an integer test is ~20% faster here than `v - v !== 0` on the floats).
  const x = (p.byteOffset + at) % 4 === 0 ? new Uint32Array(p.buffer, p.byteOffset + at, count) : new Uint32Array(p.slice(at, at + count * 4).buffer);
  for (let i = 0; i < count; i++) if ((x[i]! & 0x7f800000) === 0x7f800000) return i;
  return -1;
}

/** Same for float16 bits: exponent all ones. */
function firstNonFiniteF16(p: Uint8Array, at: number, count: number): number {
  const h = (p.byteOffset + at) % 2 === 0 ? new Uint16Array(p.buffer, p.byteOffset + at, count) : new Uint16Array(p.slice(at, at + count * 2).buffer);
  for (let i = 0; i < count; i++) if ((h[i]! & 0x7c00) === 0x7c00) return i;
  return -1;
}

function f16Special(h: number): number {
  return h & 0x03ff ? NaN : h & 0x8000 ? -Infinity : Infinity;
}

/** Split a payload into float32 tensors (F32: views of the payload; F16: converted copies). */
export function decodePayload(manifest: WireManifest, payload: Uint8Array): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  let pos = 0;
  for (const spec of manifest.tensors) {
    const shape = spec.shape.map(Number);
    const n = numel(shape);
    const dt = spec.dtype as WireDtype;
    let data: Float32Array;
    if (dt === 'F32') {
      if ((payload.byteOffset + pos) % 4 === 0) data = new Float32Array(payload.buffer, payload.byteOffset + pos, n);
      else data = new Float32Array(payload.slice(pos, pos + n * 4).buffer);
    } else if (dt === 'F16') {
      const src = (payload.byteOffset + pos) % 2 === 0
        ? new Uint16Array(payload.buffer, payload.byteOffset + pos, n)
        : new Uint16Array(payload.slice(pos, pos + n * 2).buffer);
      data = float16ArrayToFloat32(src);
    } else {
      throw new TransferError('manifest', `tensor "${spec.name}" has unsupported dtype ${spec.dtype}`);
    }
    pos += n * dtypeBytes(dt);
    out.set(spec.name, { dtype: 'float32', shape, data });
  }
  if (pos !== payload.length) throw new TransferError('size', `payload has ${payload.length} bytes, manifest describes ${pos}`);
  return out;
}

/** First non-finite value, if any (name and flat index). */
export function findNonFinite(tensors: Map<string, HostTensor>): { name: string; index: number; value: number } | undefined {
  for (const [name, t] of tensors) {
    const d = t.data;
    for (let i = 0; i < d.length; i++) {
      const v = d[i]!;
      // v - v is NaN for NaN and +-Infinity, 0 otherwise (one comparison per element).
      if (v - v !== 0) return { name, index: i, value: v };
    }
  }
  return undefined;
}

/** Content version of a set of tensors: sha256 over names, shapes and float32 bytes (hex, first 16 chars). */
export function tensorsVersion(tensors: Map<string, HostTensor>): string {
  const h = createHash('sha256');
  for (const name of [...tensors.keys()].sort()) {
    const t = tensors.get(name)!;
    h.update(`${name}:${t.dtype}:${t.shape.join(',')};`);
    h.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return h.digest('hex').slice(0, 16);
}

// ---------------------------------------------------------------------------------------------------------------
// base model identity (JoinRequest.base_model_hash)

/** Parts of SAM that stay frozen during federated fine-tuning; their hash identifies the base model. */
export const FROZEN_PREFIXES = ['vision_encoder.', 'prompt_encoder.', 'shared_image_embedding.'] as const;
/** HF ties this buffer to shared_image_embedding.positional_embedding: left out so either loading gives one hash. */
const TIED_KEY = 'prompt_encoder.shared_embedding.positional_embedding';

/**
 * The base model hash both sides compare at Join: checkpoint.ts's hashWeights (order-independent sha256 over names,
 * dtypes, shapes, values) of the frozen encoders' tensors (vision_encoder.*, prompt_encoder.*,
 * shared_image_embedding.*, without the tied copy of the positional embedding). mask_decoder.* is ignored.
 */
export function frozenEncodersHash(weights: Map<string, HostTensor>): string {
  const frozen = new Map<string, HostTensor>();
  for (const [name, t] of weights) {
    if (name === TIED_KEY) continue;
    if (FROZEN_PREFIXES.some((p) => name.startsWith(p))) frozen.set(name, t);
  }
  if (frozen.size === 0) throw new TransferError('manifest', 'no frozen encoder weights (vision_encoder.*, prompt_encoder.*, shared_image_embedding.*) to hash');
  return hashWeights(frozen);
}
