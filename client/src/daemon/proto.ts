// proto/fedsam.proto loaded with @grpc/proto-loader (same options as the server).
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_LOADER_OPTIONS, PROTO_PATH, type UpdateFrame } from '@fedsam/shared/transfer';

let cached: grpc.ServiceClientConstructor | undefined;

export function fedsamClientConstructor(): grpc.ServiceClientConstructor {
  if (!cached) {
    const def = protoLoader.loadSync(PROTO_PATH, { ...PROTO_LOADER_OPTIONS });
    const submit = (def['fedsam.v1.FedSam'] as Record<string, protoLoader.MethodDefinition<UpdateFrame, unknown>>)['SubmitUpdate']!;
    submit.requestSerialize = chunkFrameSerializer(submit.requestSerialize);
    const pkg = grpc.loadPackageDefinition(def) as unknown as { fedsam: { v1: { FedSam: grpc.ServiceClientConstructor } } };
    cached = pkg.fedsam.v1.FedSam;
  }
  return cached;
}

const varintBytes = (v: number): number => {
  let n = 1;
  for (; v >= 0x80; n++) v = Math.floor(v / 128);
  return n;
};

function writeVarint(b: Buffer, pos: number, v: number): number {
  for (; v >= 0x80; v = Math.floor(v / 128)) b[pos++] = (v % 128) | 0x80;
  b[pos++] = v;
  return pos;
}

/**
 * UpdateFrame serializer whose chunk frames (field 2: Chunk { uint64 offset = 1; bytes data = 2; }) are written into
 * one reused buffer instead of a new 1 MiB one per chunk: each upload otherwise leaves 16 MB of buffers for the
 * garbage collector, which cost the site 12-19 ms per upload (bench/README.md). Safe because, with the channel's
 * retry buffer off (Connection), grpc-js frames (copies) a message before its write completes and the stream
 * serializes the next one; the transfer's checksum would refuse a stale buffer. Other frames go to `fallback`.
 */
export function chunkFrameSerializer(fallback: (f: UpdateFrame) => Buffer): (f: UpdateFrame) => Buffer {
  let scratch = Buffer.allocUnsafe(0);
  return (f: UpdateFrame): Buffer => {
    const chunk = f.chunk;
    if (!chunk || f.header || f.trailer) return fallback(f);
    const offset = Number(chunk.offset);
    const data = chunk.data;
    const inner = 1 + varintBytes(offset) + 1 + varintBytes(data.length) + data.length;
    const total = 1 + varintBytes(inner) + inner;
    if (scratch.length < total) scratch = Buffer.allocUnsafe(Math.max(total, 2 * scratch.length));
    let pos = 0;
    scratch[pos++] = 0x12; // field 2 (chunk), length-delimited
    pos = writeVarint(scratch, pos, inner);
    scratch[pos++] = 0x08; // Chunk.offset, varint
    pos = writeVarint(scratch, pos, offset);
    scratch[pos++] = 0x12; // Chunk.data, length-delimited
    pos = writeVarint(scratch, pos, data.length);
    scratch.set(data, pos);
    return scratch.subarray(0, pos + data.length);
  };
}
