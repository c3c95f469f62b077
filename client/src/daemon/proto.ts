// proto/fedsam.proto loaded with @grpc/proto-loader (same options as the server).
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_LOADER_OPTIONS, PROTO_PATH } from '@fedsam/shared/transfer/messages';

let cached: grpc.ServiceClientConstructor | undefined;

export function fedsamClientConstructor(): grpc.ServiceClientConstructor {
  if (!cached) {
    const def = protoLoader.loadSync(PROTO_PATH, { ...PROTO_LOADER_OPTIONS });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { fedsam: { v1: { FedSam: grpc.ServiceClientConstructor } } };
    cached = pkg.fedsam.v1.FedSam;
  }
  return cached;
}
