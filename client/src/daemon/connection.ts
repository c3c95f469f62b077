// One gRPC connection to the aggregation server: typed wrappers for each RPC, streaming transfers with flow control.
import { onceAny } from '@fedsam/shared/fsutil';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { HostTensor } from '@fedsam/shared/safetensors';
import { CHECKSUM_ALGORITHMS, pickChecksum, type ChecksumAlgorithm } from '@fedsam/shared/transfer/checksum';
import { DEFAULT_CHUNK_BYTES, encodeTransfer, payloadChunks, trailerOf, TransferDecoder, type EncodedTransfer } from '@fedsam/shared/transfer/codec';
import { METADATA_AUTHORIZATION, METADATA_SESSION, type DownloadFrame, type EvaluationResult, type GetTaskRequest, type GlobalHeader, type HeartbeatResponse, type JoinRequest, type JoinResponse, type SubmitResponse, type Task, type UpdateFrame, type UpdateHeader, type WireDtype, type WireTrailer } from '@fedsam/shared/transfer/messages';
import { fedsamClientConstructor } from './proto.ts';

export interface TlsOptions {
  /** PEM of the CA that signed the server certificate (default: system roots). Path or contents. */
  ca?: string | Buffer;
  /** Client certificate + key for mutual TLS. */
  cert?: string | Buffer;
  key?: string | Buffer;
}

export interface ConnectionOptions {
  server: string;
  /** The site's token; optional when the site is identified by its client certificate (mutual TLS). */
  token?: string;
  /** true / options: TLS; false / undefined: plaintext. */
  tls?: boolean | TlsOptions;
  chunkBytes?: number;
  /** Deadline of a whole download or upload. */
  transferTimeoutMs?: number;
  /** Deadline of small calls. */
  rpcTimeoutMs?: number;
  /** Checksums to use, preferred first (default: all this build has, fastest first; benchmarks compare them). */
  checksums?: readonly ChecksumAlgorithm[];
  /** More grpc-js channel options (bench/load.ts: a connection of its own per simulated site). */
  channelOptions?: grpc.ChannelOptions;
}

const pem = (v: string | Buffer | undefined): Buffer | null => {
  if (v === undefined) return null;
  if (Buffer.isBuffer(v)) return v;
  return v.includes('-----BEGIN') ? Buffer.from(v) : readFileSync(v);
};

export function channelCredentials(tls: ConnectionOptions['tls']): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  const o = tls === true ? {} : tls;
  return grpc.credentials.createSsl(pem(o.ca), pem(o.key), pem(o.cert));
}

type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

/** A write stream has room again (or ended: then the next write fails and the call reports why). */
const waitWritable = (stream: NodeJS.EventEmitter): Promise<void> => onceAny(stream, ['drain', 'close', 'error', 'finish', 'status']);

export interface DownloadedGlobal {
  round: number;
  version: string;
  weights: Map<string, HostTensor>;
  bytes: number;
  /** The checksum the server used (the first of ours it can compute). */
  checksum: string;
}

export class Connection {
  private readonly client: AnyClient;
  sessionId = '';
  private readonly chunkBytes: number;
  private readonly transferTimeoutMs: number;
  private readonly rpcTimeoutMs: number;
  /** Checksums the server verifies (from Join; empty from a server that does not say: crc32). */
  private serverChecksums: readonly string[] = [];
  /** Checksums this site uses, preferred first. */
  private readonly checksums: readonly ChecksumAlgorithm[];
  /** A buffer handed back with recycle(): the next download of that size is received into it. */
  private spare: Uint8Array | undefined;

  constructor(private readonly o: ConnectionOptions) {
    const Ctor = fedsamClientConstructor();
    this.client = new Ctor(o.server, channelCredentials(o.tls), {
      'grpc.max_receive_message_length': 4 * 1024 * 1024,
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 5000,
      'grpc-node.flow_control_window': 16 * 1024 * 1024,
      ...o.channelOptions,
    }) as unknown as AnyClient;
    this.chunkBytes = o.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    this.checksums = o.checksums ?? CHECKSUM_ALGORITHMS;
    this.transferTimeoutMs = o.transferTimeoutMs ?? 10 * 60_000;
    this.rpcTimeoutMs = o.rpcTimeoutMs ?? 15_000;
  }

  close(): void {
    this.client.close();
  }

  private md(): grpc.Metadata {
    const m = new grpc.Metadata();
    if (this.o.token) m.set(METADATA_AUTHORIZATION, `Bearer ${this.o.token}`);
    if (this.sessionId) m.set(METADATA_SESSION, this.sessionId);
    return m;
  }

  private unary<Res>(method: string, req: unknown, timeoutMs = this.rpcTimeoutMs, signal?: AbortSignal): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason ?? new Error('aborted'));
      const call = this.client[method]!(req, this.md(), { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: Res) => {
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(res);
      }) as grpc.ClientUnaryCall;
      const onAbort = () => call.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async join(req: JoinRequest): Promise<JoinResponse> {
    this.sessionId = '';
    const res = await this.unary<JoinResponse>('Join', req);
    this.sessionId = res.session_id;
    this.serverChecksums = res.checksum_algorithms ?? [];
    return res;
  }

  heartbeat(): Promise<HeartbeatResponse> {
    return this.unary('Heartbeat', {});
  }

  getTask(waitMs: number, signal?: AbortSignal): Promise<Task> {
    const req: GetTaskRequest = { wait_ms: waitMs };
    return this.unary('GetTask', req, waitMs + this.rpcTimeoutMs, signal);
  }

  submitEvaluation(r: EvaluationResult): Promise<SubmitResponse> {
    return this.unary('SubmitEvaluation', r);
  }

  abandonTask(taskId: string, reason: string): Promise<SubmitResponse> {
    return this.unary('AbandonTask', { task_id: taskId, reason });
  }

  leave(reason: string, timeoutMs = 2000): Promise<unknown> {
    return this.unary('Leave', { reason }, timeoutMs);
  }

  /** Stream the global decoder in; verifies order, size and checksum. */
  async downloadGlobal(opts: { dtype?: WireDtype; expectedVersion?: string; signal?: AbortSignal } = {}): Promise<DownloadedGlobal> {
    const call = this.client.DownloadGlobal!(
      { dtype: opts.dtype ?? 'F32', expected_version: opts.expectedVersion ?? '', checksum_algorithms: [...this.checksums] },
      this.md(),
      { deadline: Date.now() + this.transferTimeoutMs },
    ) as grpc.ClientReadableStream<DownloadFrame>;
    const onAbort = () => call.cancel();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      let header: GlobalHeader | undefined;
      let dec: TransferDecoder | undefined;
      let trailer: WireTrailer | undefined;
      for await (const f of call as AsyncIterable<DownloadFrame>) {
        if (f.frame === 'header' && f.header && !header) {
          header = f.header;
          const manifest = header.manifest ?? { tensors: [], total_bytes: 0 };
          const into = this.spare?.length === Number(manifest.total_bytes) ? this.spare : undefined;
          if (into) this.spare = undefined;
          dec = new TransferDecoder(manifest, { into });
        } else if (f.frame === 'chunk' && dec && !trailer) {
          dec.push(f.chunk);
        } else if (f.frame === 'trailer' && dec && !trailer && f.trailer) {
          trailer = f.trailer;
        } else {
          throw new Error(`DownloadGlobal: unexpected ${f.frame ?? 'empty'} frame`);
        }
      }
      if (!header || !dec) throw new Error('DownloadGlobal: the server sent no header');
      const weights = dec.finish(trailer);
      return { round: header.round, version: header.version, weights, bytes: dec.bytesReceived, checksum: dec.manifest.checksum_algorithm || 'sha256' };
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Hand back a buffer nothing reads any more (the payload of an update the server accepted): the next download
   * of the same size is received into it instead of a new one (a fresh 16 MB buffer costs ~6-10 ms of page faults).
   */
  recycle(buffer: Uint8Array): void {
    if (buffer.byteOffset === 0 && buffer.byteLength === buffer.buffer.byteLength) this.spare = buffer;
  }

  /** Encode (once) and stream an update: header, chunks (<= chunkBytes), trailer. */
  encodeUpdate(weights: Map<string, HostTensor>, dtype: WireDtype = 'F32'): EncodedTransfer {
    return encodeTransfer(weights, dtype, pickChecksum(this.serverChecksums, this.checksums));
  }

  submitUpdate(header: Omit<UpdateHeader, 'manifest'>, enc: EncodedTransfer, signal?: AbortSignal): Promise<SubmitResponse> {
    return this.submitFrames([
      { header: { ...header, manifest: enc.manifest } },
      ...[...payloadChunks(enc.payload, this.chunkBytes)].map((chunk): UpdateFrame => ({ chunk })),
      { trailer: trailerOf(enc) },
    ], signal);
  }

  /** Low-level: send arbitrary frames (tests use it to craft invalid uploads). */
  submitFrames(frames: Iterable<UpdateFrame>, signal?: AbortSignal): Promise<SubmitResponse> {
    return new Promise<SubmitResponse>((resolve, reject) => {
      let settled = false;
      const call = this.client.SubmitUpdate!(this.md(), { deadline: Date.now() + this.transferTimeoutMs }, (err: grpc.ServiceError | null, res: SubmitResponse) => {
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(res);
      }) as grpc.ClientWritableStream<UpdateFrame>;
      const onAbort = () => call.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
      call.on('error', () => undefined); // reported through the callback
      (async () => {
        for (const f of frames) {
          if (settled) return;
          // Yield after each frame: the socket sends this chunk while the next one is serialized.
          if (!call.write(f)) await waitWritable(call);
          else await new Promise<void>((r) => setImmediate(r));
        }
        if (!settled) call.end();
      })().catch(() => call.cancel());
    });
  }
}
