// safetensors reader/writer (https://github.com/huggingface/safetensors format):
//   [u64 LE header length N][N bytes JSON header, space-padded to a multiple of 8][raw little-endian tensor data]
// Header: {name: {dtype, shape, data_offsets: [begin, end]}} (offsets relative to the data region) plus an
// optional "__metadata__": {string: string}.
//
// Files are read tensor by tensor with positioned reads straight into the destination typed array (one copy of
// each tensor in memory, never the whole file), converting F16/BF16/F64/I64/... chunk-wise. Writes stream the
// tensors into a temp file in the target directory, fsync, then rename (atomic).
import { randomBytes } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { basename, dirname, join } from 'node:path';

export type HostDtype = 'float32' | 'int32' | 'uint8';

/** A tensor held on the host (not in tfjs). `data.length` equals the product of `shape` ([] = scalar = 1). */
export interface HostTensor {
  dtype: HostDtype;
  shape: number[];
  data: Float32Array | Int32Array | Uint8Array;
}

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

/** Every dtype the safetensors format defines (with its element size in bytes). */
const DTYPE_SIZE = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8,
} as const;
export type SafetensorsDtype = keyof typeof DTYPE_SIZE;

/** Host dtype each stored dtype is read as (undefined: known to the format, not readable here). */
const READ_AS: Partial<Record<SafetensorsDtype, HostDtype>> = {
  F32: 'float32', F16: 'float32', BF16: 'float32', F64: 'float32',
  I32: 'int32', I64: 'int32', I16: 'int32', I8: 'int32', U16: 'int32', U32: 'int32', U64: 'int32',
  U8: 'uint8', BOOL: 'uint8',
};

/**
 * Order of the dtypes in the Rust `Dtype` enum: the python library lays tensors out by dtype (descending, which
 * keeps every tensor aligned to its element size) and then by name.
 */
const DTYPE_RANK: Record<SafetensorsDtype, number> = {
  BOOL: 0, U8: 4, I8: 5, F8_E5M2: 6, F8_E4M3: 7, I16: 9, U16: 10, F16: 11, BF16: 12,
  I32: 13, U32: 14, F32: 15, F64: 17, I64: 18, U64: 19,
};

const MAX_HEADER_BYTES = 100 * 1024 * 1024;
/** Largest single positioned read/write (fs refuses > 2 GiB per call). */
const IO_CHUNK = 64 * 1024 * 1024;
/** Elements converted per chunk for dtypes that are not read in place. */
const CONVERT_CHUNK_ELEMS = 1 << 20;

function assertLittleEndianHost(): void {
  if (endianness() !== 'LE') throw new SafetensorsError('safetensors: big-endian hosts are not supported');
}

// ---------------------------------------------------------------------------------------------------------------
// float16 / bfloat16 conversion

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/**
 * float32 bits -> IEEE half bits, round to nearest even, with subnormals, overflow to +-inf, NaN kept NaN
 * (numpy's npy_floatbits_to_halfbits).
 */
export function float32BitsToFloat16Bits(f: number): number {
  const hSgn = (f >>> 16) & 0x8000;
  const fExp = f & 0x7f800000;
  if (fExp >= 0x47800000) {
    // inf / nan / overflow
    if (fExp === 0x7f800000) {
      const fSig = f & 0x007fffff;
      if (fSig !== 0) {
        let ret = 0x7c00 + (fSig >>> 13);
        if (ret === 0x7c00) ret++; // keep it a NaN
        return hSgn + ret;
      }
    }
    return hSgn + 0x7c00;
  }
  if (fExp <= 0x38000000) {
    // half subnormal or zero
    if (fExp < 0x33000000) return hSgn; // underflows to +-0 (anything below half the smallest subnormal)
    const e = fExp >>> 23;
    let fSig = 0x00800000 + (f & 0x007fffff);
    const lost = f & 0x7ff; // bits the extra shift (up to 11) drops: make ties exact
    fSig >>>= 113 - e;
    if ((fSig & 0x3fff) !== 0x1000 || lost !== 0) fSig += 0x1000;
    return hSgn + (fSig >>> 13);
  }
  const hExp = (fExp - 0x38000000) >>> 13;
  let fSig = f & 0x007fffff;
  if ((fSig & 0x3fff) !== 0x1000) fSig += 0x1000; // round to nearest even
  return hSgn + ((fSig >>> 13) + hExp); // mantissa carry rolls into the exponent (up to inf): correct
}

/** float32 value -> IEEE half bits (round to nearest even). */
export function float32ToFloat16Bits(x: number): number {
  f32Scratch[0] = x;
  return float32BitsToFloat16Bits(u32Scratch[0]!);
}

let f16Table: Float32Array | undefined;
/** 65536-entry half -> float32 table (256 KB, built once). */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) t[h] = sign * m * 2 ** -24;
    else if (e === 31) t[h] = m ? NaN : sign * Infinity;
    else t[h] = sign * (1 + m / 1024) * 2 ** (e - 15);
  }
  f16Table = t;
  return t;
}

/** IEEE half bits -> number (exact). */
export function float16BitsToFloat32(h: number): number {
  return halfTable()[h & 0xffff]!;
}

/** bfloat16 bits -> number (exact: bf16 is the top half of a float32). */
export function bfloat16BitsToFloat32(h: number): number {
  u32Scratch[0] = (h & 0xffff) << 16;
  return f32Scratch[0]!;
}

/** Float32Array -> Uint16Array of half bits. */
export function float32ArrayToFloat16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) out[i] = float32BitsToFloat16Bits(bits[i]!);
  return out;
}

/** Uint16Array of half bits -> Float32Array. */
export function float16ArrayToFloat32(src: Uint16Array, out: Float32Array = new Float32Array(src.length), outOffset = 0): Float32Array {
  const t = halfTable();
  for (let i = 0; i < src.length; i++) out[outOffset + i] = t[src[i]!]!;
  return out;
}

/** Uint16Array of bfloat16 bits -> Float32Array. */
export function bfloat16ArrayToFloat32(src: Uint16Array, out: Float32Array = new Float32Array(src.length), outOffset = 0): Float32Array {
  const o = new Uint32Array(out.buffer, out.byteOffset + outOffset * 4, src.length);
  for (let i = 0; i < src.length; i++) o[i] = src[i]! << 16;
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// header

export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Byte offsets relative to the start of the data region. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** File name (or a label for in-memory buffers), used in error messages. */
  source: string;
  /** Absolute byte offset of the data region (8 + header length). */
  dataStart: number;
  /** Size of the data region in bytes. */
  dataLength: number;
  /** Entries in header order. */
  entries: Map<string, SafetensorsEntry>;
  metadata: Record<string, string>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Validate the header-length field (bytes 0..8) against the total size; returns the header length. */
function checkHeaderLength(source: string, prefix: Uint8Array, totalSize: number): number {
  if (totalSize < 8) {
    throw new SafetensorsError(`${source}: not a safetensors file: ${totalSize} bytes, shorter than the 8-byte header length`);
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(`${source}: not a safetensors file or corrupt: header length ${n} bytes is absurd (limit ${MAX_HEADER_BYTES})`);
  }
  const len = Number(n);
  if (len > totalSize - 8) {
    throw new SafetensorsError(`${source}: truncated or not a safetensors file: header length ${len} bytes but the file has only ${totalSize - 8} bytes after the length field`);
  }
  if (len < 2) throw new SafetensorsError(`${source}: corrupt safetensors header: header length ${len} is too small for a JSON object`);
  return len;
}

/** Parse and validate the JSON header. */
function parseHeader(source: string, headerBytes: Uint8Array, dataStart: number, dataLength: number): SafetensorsHeader {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (e) {
    throw new SafetensorsError(`${source}: corrupt safetensors header: not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (!isObject(json)) throw new SafetensorsError(`${source}: corrupt safetensors header: expected a JSON object`);
  const metadata: Record<string, string> = {};
  const entries = new Map<string, SafetensorsEntry>();
  for (const [name, info] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isObject(info)) throw new SafetensorsError(`${source}: corrupt safetensors header: __metadata__ must be an object of strings`);
      for (const [k, v] of Object.entries(info)) {
        if (typeof v !== 'string') throw new SafetensorsError(`${source}: corrupt safetensors header: __metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const bad = (what: string): never => {
      throw new SafetensorsError(`${source}: corrupt safetensors header: tensor "${name}" ${what}`);
    };
    if (!isObject(info)) bad('is not an object');
    const { dtype, shape, data_offsets: offsets } = info as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_SIZE)) {
      bad(`has unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(DTYPE_SIZE).join(', ')})`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      bad(`has an invalid shape ${JSON.stringify(shape)} (expected an array of non-negative integers)`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
      bad(`has invalid data_offsets ${JSON.stringify(offsets)} (expected [begin, end] with 0 <= begin <= end)`);
    }
    const dt = dtype as SafetensorsDtype;
    const [begin, end] = offsets as [number, number];
    const expectedBytes = numel(shape as number[]) * DTYPE_SIZE[dt];
    if (end - begin !== expectedBytes) {
      bad(`has ${end - begin} data bytes (data_offsets [${begin}, ${end}]) but dtype ${dt} shape [${(shape as number[]).join(', ')}] needs ${expectedBytes}`);
    }
    if (end > dataLength) {
      throw new SafetensorsError(
        `${source}: truncated or corrupt: tensor "${name}" data_offsets [${begin}, ${end}] lie outside the data region (${dataLength} bytes` +
          ` after the ${dataStart}-byte header)`,
      );
    }
    entries.set(name, { name, dtype: dt, shape: [...(shape as number[])], begin, end });
  }
  // Overlaps: sort by begin; each (non-empty) tensor must start at or after the previous one's end.
  const sorted = [...entries.values()].filter((e) => e.end > e.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.begin < prev.end) {
      throw new SafetensorsError(
        `${source}: corrupt safetensors header: tensors "${prev.name}" [${prev.begin}, ${prev.end}] and "${cur.name}" [${cur.begin}, ${cur.end}] overlap`,
      );
    }
  }
  return { source, dataStart, dataLength, entries, metadata };
}

async function readExactly(fh: FileHandle, source: string, target: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < target.length) {
    const len = Math.min(IO_CHUNK, target.length - done);
    const { bytesRead } = await fh.read(target, done, len, position + done);
    if (bytesRead === 0) {
      throw new SafetensorsError(`${source}: truncated: unexpected end of file at byte ${position + done} (wanted ${target.length - done} more bytes)`);
    }
    done += bytesRead;
  }
}

async function readHeaderFrom(fh: FileHandle, file: string): Promise<SafetensorsHeader> {
  const { size } = await fh.stat();
  const prefix = new Uint8Array(8);
  if (size >= 8) await readExactly(fh, file, prefix, 0);
  const len = checkHeaderLength(file, prefix, size);
  const headerBytes = new Uint8Array(len);
  await readExactly(fh, file, headerBytes, 8);
  return parseHeader(file, headerBytes, 8 + len, size - 8 - len);
}

/** Read and validate only the header of a .safetensors file (names, dtypes, shapes, offsets, metadata). */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  const fh = await openForRead(file);
  try {
    return await readHeaderFrom(fh, file);
  } finally {
    await fh.close();
  }
}

async function openForRead(file: string): Promise<FileHandle> {
  try {
    return await open(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new SafetensorsError(`${file}: cannot open safetensors file (${code ?? (e as Error).message})`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// decoding one tensor

/** Source of raw bytes: positioned reads relative to the data region. */
type ByteSource = (target: Uint8Array, offset: number) => Promise<void>;

function allocHost(dtype: HostDtype, n: number): Float32Array | Int32Array | Uint8Array {
  return dtype === 'float32' ? new Float32Array(n) : dtype === 'int32' ? new Int32Array(n) : new Uint8Array(n);
}

async function decodeEntry(source: string, e: SafetensorsEntry, read: ByteSource): Promise<HostTensor> {
  const hostDtype = READ_AS[e.dtype];
  if (!hostDtype) {
    throw new SafetensorsError(`${source}: tensor "${e.name}" has dtype ${e.dtype}, which is not supported (F32/F16/BF16/F64, I64/I32/I16/I8/U16/U32/U64, U8/BOOL are)`);
  }
  const n = numel(e.shape);
  const out = allocHost(hostDtype, n);
  const shape = [...e.shape];
  // Same layout on disk and in memory: read in place.
  if (e.dtype === 'F32' || e.dtype === 'I32' || e.dtype === 'U8' || e.dtype === 'BOOL') {
    await read(new Uint8Array(out.buffer, out.byteOffset, out.byteLength), e.begin);
    return { dtype: hostDtype, shape, data: out };
  }
  const size = DTYPE_SIZE[e.dtype];
  const scratch = new ArrayBuffer(Math.min(n, CONVERT_CHUNK_ELEMS) * size);
  for (let start = 0; start < n; start += CONVERT_CHUNK_ELEMS) {
    const count = Math.min(CONVERT_CHUNK_ELEMS, n - start);
    const bytes = new Uint8Array(scratch, 0, count * size);
    await read(bytes, e.begin + start * size);
    convertChunk(source, e, scratch, count, out, start);
  }
  return { dtype: hostDtype, shape, data: out };
}

function convertChunk(
  source: string,
  e: SafetensorsEntry,
  scratch: ArrayBuffer,
  count: number,
  out: Float32Array | Int32Array | Uint8Array,
  start: number,
): void {
  switch (e.dtype) {
    case 'F16':
      float16ArrayToFloat32(new Uint16Array(scratch, 0, count), out as Float32Array, start);
      return;
    case 'BF16':
      bfloat16ArrayToFloat32(new Uint16Array(scratch, 0, count), out as Float32Array, start);
      return;
    case 'F64':
      (out as Float32Array).set(new Float64Array(scratch, 0, count), start);
      return;
    case 'I16':
      (out as Int32Array).set(new Int16Array(scratch, 0, count), start);
      return;
    case 'I8':
      (out as Int32Array).set(new Int8Array(scratch, 0, count), start);
      return;
    case 'U16':
      (out as Int32Array).set(new Uint16Array(scratch, 0, count), start);
      return;
    case 'U32': {
      const src = new Uint32Array(scratch, 0, count);
      for (let i = 0; i < count; i++) {
        const v = src[i]!;
        if (v > 0x7fffffff) rangeError(source, e, start + i, String(v));
        out[start + i] = v;
      }
      return;
    }
    case 'I64':
    case 'U64': {
      const words = new Int32Array(scratch, 0, count * 2);
      const unsigned = e.dtype === 'U64';
      for (let i = 0; i < count; i++) {
        const lo = words[2 * i]!;
        const hi = words[2 * i + 1]!;
        // Representable as int32 iff the high word is the sign extension of the low word (U64: both non-negative).
        if (hi !== lo >> 31 || (unsigned && lo < 0)) {
          rangeError(source, e, start + i, new DataView(scratch, i * 8, 8)[unsigned ? 'getBigUint64' : 'getBigInt64'](0, true).toString());
        }
        out[start + i] = lo;
      }
      return;
    }
    default:
      throw new SafetensorsError(`${source}: tensor "${e.name}": no conversion for dtype ${e.dtype}`);
  }
}

function rangeError(source: string, e: SafetensorsEntry, index: number, value: string): never {
  throw new SafetensorsError(`${source}: tensor "${e.name}" (${e.dtype}) element ${index} = ${value} does not fit in int32`);
}

// ---------------------------------------------------------------------------------------------------------------
// reading

export interface ReadSafetensorsOptions {
  /** Only tensors whose name passes are read (the header is still validated in full). */
  filter?: (name: string) => boolean;
}

export interface SafetensorsContents {
  tensors: Map<string, HostTensor>;
  metadata: Record<string, string>;
}

/** Read a .safetensors file tensor by tensor (positioned reads; never the whole file in one buffer). */
export async function readSafetensors(file: string, opts: ReadSafetensorsOptions = {}): Promise<SafetensorsContents> {
  assertLittleEndianHost();
  const fh = await openForRead(file);
  try {
    const header = await readHeaderFrom(fh, file);
    const tensors = new Map<string, HostTensor>();
    // Read in file order (sequential I/O).
    const order = [...header.entries.values()].filter((e) => !opts.filter || opts.filter(e.name)).sort((a, b) => a.begin - b.begin);
    const read: ByteSource = (target, offset) => readExactly(fh, file, target, header.dataStart + offset);
    for (const e of order) tensors.set(e.name, await decodeEntry(file, e, read));
    // Keep the header's order for callers that iterate.
    const ordered = new Map<string, HostTensor>();
    for (const name of header.entries.keys()) {
      const t = tensors.get(name);
      if (t) ordered.set(name, t);
    }
    return { tensors: ordered, metadata: header.metadata };
  } finally {
    await fh.close();
  }
}

/** Parse an in-memory safetensors buffer (small payloads: gRPC messages, caches). Tensors are copied out. */
export function decodeSafetensors(buf: Uint8Array, source = '<safetensors buffer>', opts: ReadSafetensorsOptions = {}): SafetensorsContents {
  assertLittleEndianHost();
  const len = checkHeaderLength(source, buf.subarray(0, 8), buf.length);
  const header = parseHeader(source, buf.subarray(8, 8 + len), 8 + len, buf.length - 8 - len);
  const tensors = new Map<string, HostTensor>();
  for (const e of header.entries.values()) {
    if (opts.filter && !opts.filter(e.name)) continue;
    tensors.set(e.name, decodeEntrySync(source, e, buf.subarray(header.dataStart + e.begin, header.dataStart + e.end)));
  }
  return { tensors, metadata: header.metadata };
}

function decodeEntrySync(source: string, e: SafetensorsEntry, bytes: Uint8Array): HostTensor {
  const hostDtype = READ_AS[e.dtype];
  if (!hostDtype) throw new SafetensorsError(`${source}: tensor "${e.name}" has dtype ${e.dtype}, which is not supported`);
  const n = numel(e.shape);
  const out = allocHost(hostDtype, n);
  if (e.dtype === 'F32' || e.dtype === 'I32' || e.dtype === 'U8' || e.dtype === 'BOOL') {
    new Uint8Array(out.buffer).set(bytes);
  } else {
    const scratch = new ArrayBuffer(bytes.length); // aligned copy for the typed-array views
    new Uint8Array(scratch).set(bytes);
    convertChunk(source, e, scratch, n, out, 0);
  }
  return { dtype: hostDtype, shape: [...e.shape], data: out };
}

// ---------------------------------------------------------------------------------------------------------------
// writing

export interface WriteSafetensorsOptions {
  /** Header __metadata__; default {format: 'pt'} (what torch's save_file writes). */
  metadata?: Record<string, string>;
  /** Store float32 tensors as F16 (round to nearest even). */
  float16?: boolean;
}

interface PlannedTensor {
  name: string;
  dtype: SafetensorsDtype;
  t: HostTensor;
  begin: number;
  end: number;
}

function planLayout(source: string, tensors: Map<string, HostTensor>, opts: WriteSafetensorsOptions) {
  const planned: PlannedTensor[] = [];
  for (const [name, t] of tensors) {
    if (!name || name === '__metadata__') throw new SafetensorsError(`${source}: invalid tensor name ${JSON.stringify(name)}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(`${source}: tensor "${name}" has an invalid shape ${JSON.stringify(t.shape)}`);
    }
    const expectedCtor = t.dtype === 'float32' ? Float32Array : t.dtype === 'int32' ? Int32Array : t.dtype === 'uint8' ? Uint8Array : undefined;
    if (!expectedCtor) throw new SafetensorsError(`${source}: tensor "${name}" has unsupported dtype ${JSON.stringify(t.dtype)}`);
    if (!(t.data instanceof expectedCtor)) {
      throw new SafetensorsError(`${source}: tensor "${name}" says dtype ${t.dtype} but holds a ${t.data?.constructor?.name}`);
    }
    if (t.data.length !== numel(t.shape)) {
      throw new SafetensorsError(`${source}: tensor "${name}" has ${t.data.length} elements but shape [${t.shape.join(', ')}] needs ${numel(t.shape)}`);
    }
    const dtype: SafetensorsDtype = t.dtype === 'float32' ? (opts.float16 ? 'F16' : 'F32') : t.dtype === 'int32' ? 'I32' : 'U8';
    planned.push({ name, dtype, t, begin: 0, end: 0 });
  }
  // Python safetensors order: dtype descending (keeps alignment), then name.
  planned.sort((a, b) => DTYPE_RANK[b.dtype] - DTYPE_RANK[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  let offset = 0;
  const header: Record<string, unknown> = { __metadata__: opts.metadata ?? { format: 'pt' } };
  for (const p of planned) {
    p.begin = offset;
    offset += numel(p.t.shape) * DTYPE_SIZE[p.dtype];
    p.end = offset;
    header[p.name] = { dtype: p.dtype, shape: p.t.shape, data_offsets: [p.begin, p.end] };
  }
  let headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (headerBytes.length % 8)) % 8;
  if (pad) headerBytes = Buffer.concat([headerBytes, Buffer.alloc(pad, 0x20)]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));
  return { planned, prefix, headerBytes, dataLength: offset };
}

/** Byte chunks of one planned tensor, in order (views for F32/I32/U8; converted chunks for F16). */
function* tensorChunks(p: PlannedTensor): Generator<Uint8Array> {
  const data = p.t.data;
  if (p.dtype === 'F16') {
    const src = data as Float32Array;
    const scratch = new Uint16Array(Math.min(src.length, CONVERT_CHUNK_ELEMS));
    for (let start = 0; start < src.length; start += CONVERT_CHUNK_ELEMS) {
      const part = src.subarray(start, Math.min(src.length, start + CONVERT_CHUNK_ELEMS));
      const out = scratch.subarray(0, part.length);
      float32ArrayToFloat16(part, out);
      yield new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    }
    return;
  }
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  for (let start = 0; start < bytes.length; start += IO_CHUNK) yield bytes.subarray(start, Math.min(bytes.length, start + IO_CHUNK));
}

/** In-memory safetensors (small payloads). Same layout and bytes as writeSafetensors. */
export function encodeSafetensors(
  tensors: Map<string, HostTensor>,
  metadata: Record<string, string> = { format: 'pt' },
  opts: { float16?: boolean } = {},
): Buffer {
  assertLittleEndianHost();
  const { planned, prefix, headerBytes, dataLength } = planLayout('<safetensors buffer>', tensors, { metadata, float16: opts.float16 });
  const out = Buffer.allocUnsafe(8 + headerBytes.length + dataLength);
  prefix.copy(out, 0);
  headerBytes.copy(out, 8);
  const base = 8 + headerBytes.length;
  for (const p of planned) {
    let pos = base + p.begin;
    for (const chunk of tensorChunks(p)) {
      out.set(chunk, pos);
      pos += chunk.length;
    }
  }
  return out;
}

async function writeAll(fh: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
}

/** A temp path next to `file` (same directory, so rename is atomic). */
export function tempSibling(file: string): string {
  return join(dirname(file), `.${basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** fsync a directory so a rename inside it is durable (best effort: not every platform allows it). */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    // ignore (e.g. Windows)
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

/**
 * Write tensors to `file` atomically (temp file in the same directory, fsync, rename). Keys are laid out like the
 * python library (dtype, then name); float32 -> F32 (or F16 with `float16`), int32 -> I32, uint8 -> U8.
 * Tensor data is streamed, never concatenated into one buffer.
 */
export async function writeSafetensors(file: string, tensors: Map<string, HostTensor>, opts: WriteSafetensorsOptions = {}): Promise<void> {
  assertLittleEndianHost();
  const { planned, prefix, headerBytes } = planLayout(file, tensors, opts);
  const tmp = tempSibling(file);
  let fh: FileHandle | undefined;
  try {
    fh = await open(tmp, 'wx');
    await writeAll(fh, prefix, 0);
    await writeAll(fh, headerBytes, 8);
    let pos = 8 + headerBytes.length;
    for (const p of planned) {
      for (const chunk of tensorChunks(p)) {
        await writeAll(fh, chunk, pos);
        pos += chunk.length;
      }
    }
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, file);
  } catch (e) {
    await fh?.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    if (e instanceof SafetensorsError) throw e;
    throw new SafetensorsError(`${file}: cannot write safetensors file: ${(e as Error).message}`);
  }
  await fsyncDir(dirname(file));
}

// ---------------------------------------------------------------------------------------------------------------
// small helpers

export function hostTensorNumel(t: Pick<HostTensor, 'shape'>): number {
  return numel(t.shape);
}

export function float32Tensor(shape: number[], data?: ArrayLike<number>): HostTensor {
  const arr = new Float32Array(numel(shape));
  if (data) arr.set(data);
  return { dtype: 'float32', shape, data: arr };
}
