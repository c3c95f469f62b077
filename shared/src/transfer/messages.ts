// The wire messages of proto/fedsam.proto as TypeScript shapes (as @grpc/proto-loader decodes them with
// PROTO_LOADER_OPTIONS; encoding accepts the same shapes), the proto file itself and the call metadata keys. Shared
// by the server and the site daemon; no gRPC import here.
import { fileURLToPath } from 'node:url';

export const PROTO_PATH = fileURLToPath(new URL('../../../proto/fedsam.proto', import.meta.url));
/** Options for @grpc/proto-loader's loadSync: snake_case fields, uint64 as number, enums as strings, oneof names. */
export const PROTO_LOADER_OPTIONS = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true } as const;
export const SERVICE_NAME = 'fedsam.v1.FedSam';

export const METADATA_AUTHORIZATION = 'authorization';
export const METADATA_SESSION = 'x-fedsam-session';


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
/** FitConfig.params key by which a strategy asks sites for SCAFFOLD's drift correction (value 1). */
export const SCAFFOLD_PARAM = 'scaffold';
/** FitConfig.params key by which the server asks sites to train a Ditto personal model too (value: λ ≥ 0). */
export const DITTO_LAMBDA_PARAM = 'ditto_lambda';
export interface WireFitConfig {
  epochs: number; lr: number; batch_size: number; proximal_mu: number; seed: number; params: Record<string, number>;
  points_positive?: number; points_negative?: number;
  /** 'keep' | 'fresh' ('' from older servers = fresh). */
  optimizer_state?: string; warmup_steps?: number;
  /** 'sam' | pixels as a decimal string ('' from older servers = the recipe's 20; train/boxJitter.ts). */
  box_jitter?: string;
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
