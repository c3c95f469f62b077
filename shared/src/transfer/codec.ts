// The named-tensor codec of the FedSAM wire protocol (proto/fedsam.proto). A transfer = manifest (manifest.ts) +
// payload (the tensors' raw little-endian bytes concatenated in manifest order, float32 or float16) + a checksum of
// the payload (checksum.ts: xxh3, crc32 or sha256, negotiated). The payload is cut into chunks of at most
// `chunkBytes` (1 MiB by default) so that no gRPC message comes near the default 4 MiB limit. The receiver writes
// chunks straight into one preallocated buffer; float32 tensors are views of it.
import { float16ArrayToFloat32, float32ArrayToFloat16, type HostTensor } from '../safetensors.ts';
import { CHECKSUM_ALGORITHM, createChecksum, type ChecksumAlgorithm, type Checksum } from './checksum.ts';
import { TransferError } from './errors.ts';
import { buildManifest, dtypeBytes, numel } from './manifest.ts';
import type { WireChunk, WireDtype, WireManifest, WireTrailer } from './messages.ts';

export const DEFAULT_CHUNK_BYTES = 1 << 20;
/** Hard ceiling for one chunk (well under gRPC's 4 MiB default message limit). */
export const MAX_CHUNK_BYTES = 2 << 20;


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
