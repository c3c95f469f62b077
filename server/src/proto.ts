// proto/fedsam.proto loaded with @grpc/proto-loader (options shared with the client daemon).
//
// DownloadGlobal's response serializer also passes PreEncoded frames through untouched: the server serializes the
// frames of a global decoder once per version and dtype, then every download reuses those bytes (no protobuf
// copy of 16 MB per site per round).
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_LOADER_OPTIONS, PROTO_PATH, type DownloadFrame } from '@fedsam/shared/transfer/messages';

export class PreEncoded {
  constructor(readonly bytes: Buffer) {}
}

/** A request message that protobuf could not decode: handlers answer it with INVALID_ARGUMENT (grpc-js: INTERNAL). */
export class Malformed {
  constructor(readonly problem: string) {}
}

let cached: grpc.ServiceDefinition | undefined;
let serializeDownloadFrame: ((f: DownloadFrame) => Buffer) | undefined;

export function fedsamServiceDefinition(): grpc.ServiceDefinition {
  if (!cached) {
    const def = protoLoader.loadSync(PROTO_PATH, { ...PROTO_LOADER_OPTIONS });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { fedsam: { v1: { FedSam: grpc.ServiceClientConstructor } } };
    const service = { ...pkg.fedsam.v1.FedSam.service };
    for (const [name, m] of Object.entries(service)) {
      const decode = m.requestDeserialize;
      service[name] = { ...m, requestDeserialize: (b: Buffer) => {
        try {
          return decode(b);
        } catch (e) {
          return new Malformed((e as Error).message);
        }
      } };
    }
    const download = service.DownloadGlobal!;
    const serialize = download.responseSerialize as (f: DownloadFrame) => Buffer;
    serializeDownloadFrame = serialize;
    service.DownloadGlobal = {
      ...download,
      responseSerialize: (v: DownloadFrame | PreEncoded) => (v instanceof PreEncoded ? v.bytes : serialize(v)),
    };
    cached = service;
  }
  return cached;
}

/** Serialize a download frame now (to be sent later as PreEncoded). */
export function preEncodeDownloadFrame(f: DownloadFrame): PreEncoded {
  fedsamServiceDefinition();
  return new PreEncoded(serializeDownloadFrame!(f));
}
