// A hostile site for tests: a bare grpc-js Client that speaks only proto/fedsam.proto (messages encoded here with
// protobufjs, as an independent implementation would), and can send what a well-behaved client never does: raw
// bytes instead of a message, header-less or idle upload streams, several uploads at once.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { METADATA_AUTHORIZATION, METADATA_SESSION, PROTO_PATH } from '@fedsam/shared/transfer/messages';

const root = new protobuf.Root().loadSync(PROTO_PATH, { keepCase: true });
const T = (name: string) => root.lookupType(`fedsam.v1.${name}`);
const toObject = (t: protobuf.Type, b: Buffer) => t.toObject(t.decode(b), { longs: Number, enums: String, defaults: true, oneofs: true }) as Record<string, unknown>;

/** Encode a message of the named type (plain object, snake_case fields as in the .proto). */
export function encode(type: string, msg: Record<string, unknown>): Buffer {
  const t = T(type);
  return Buffer.from(t.encode(t.fromObject(msg)).finish());
}

/** What an RPC ended with: OK and the response, or a status. */
export interface Outcome {
  code: grpc.status;
  details: string;
  response?: Record<string, unknown>;
}

const outcome = (type: string) => (err: grpc.ServiceError | null, res?: Buffer): Outcome =>
  err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: '', response: res ? toObject(T(type), res) : undefined };

/** An upload stream left to the test: write frames (objects are UpdateFrames, Buffers go out as they are). */
export interface RawUpload {
  write(frame: Record<string, unknown> | Buffer): boolean;
  end(): void;
  cancel(): void;
  /** Settles with how the server ended the call. */
  result: Promise<Outcome>;
  call: grpc.ClientWritableStream<Buffer>;
  settled: boolean;
}

export class RawSite {
  readonly client: grpc.Client;
  session = '';

  constructor(readonly address: string, readonly token: string, credentials = grpc.credentials.createInsecure(), options: grpc.ChannelOptions = {}) {
    this.client = new grpc.Client(address, credentials, { 'grpc.max_send_message_length': -1, ...options });
  }

  metadata(): grpc.Metadata {
    const m = new grpc.Metadata();
    if (this.token) m.set(METADATA_AUTHORIZATION, `Bearer ${this.token}`);
    if (this.session) m.set(METADATA_SESSION, this.session);
    return m;
  }

  /** A unary call with an already-encoded request (or any bytes). */
  unaryBytes(method: string, request: Buffer, responseType: string, timeoutMs = 10_000): Promise<Outcome> {
    return new Promise((resolve) => {
      this.client.makeUnaryRequest<Buffer, Buffer>(
        `/fedsam.v1.FedSam/${method}`, (b) => b, (b) => b, request, this.metadata(), { deadline: Date.now() + timeoutMs },
        (err, res) => resolve(outcome(responseType)(err, res)),
      );
    });
  }

  unary(method: string, requestType: string, request: Record<string, unknown>, responseType: string, timeoutMs?: number): Promise<Outcome> {
    return this.unaryBytes(method, encode(requestType, request), responseType, timeoutMs);
  }

  async join(site: string, baseModelHash: string, decoder: Record<string, unknown>): Promise<Outcome> {
    const r = await this.unary('Join', 'JoinRequest', { site, base_model_hash: baseModelHash, decoder, client_version: 'raw-test' }, 'JoinResponse');
    if (r.code === grpc.status.OK) this.session = String(r.response!.session_id);
    return r;
  }

  /** Long-poll until a task of this kind comes (or the time is up). */
  async task(kind: 'fit' | 'evaluate', timeoutMs = 20_000): Promise<Record<string, unknown>> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      const r = await this.unary('GetTask', 'GetTaskRequest', { wait_ms: 500 }, 'Task');
      if (r.code !== grpc.status.OK) throw new Error(`GetTask: ${grpc.status[r.code]} ${r.details}`);
      if (r.response![kind]) return r.response!;
    }
    throw new Error(`no ${kind} task within ${timeoutMs} ms`);
  }

  /** Open a SubmitUpdate stream and write nothing yet. */
  upload(timeoutMs = 60_000): RawUpload {
    let resolve!: (o: Outcome) => void;
    const result = new Promise<Outcome>((r) => (resolve = r));
    const u = {} as RawUpload;
    u.settled = false;
    const call = this.client.makeClientStreamRequest<Buffer, Buffer>(
      '/fedsam.v1.FedSam/SubmitUpdate',
      (b) => b, (b) => b, this.metadata(), { deadline: Date.now() + timeoutMs },
      (err, res) => {
        u.settled = true;
        resolve(outcome('SubmitResponse')(err, res));
      },
    );
    call.on('error', () => undefined); // reported through the callback
    Object.assign(u, {
      call,
      result,
      write: (f: Record<string, unknown> | Buffer) => (u.settled ? false : call.write(Buffer.isBuffer(f) ? f : encode('UpdateFrame', f))),
      end: () => call.end(),
      cancel: () => call.cancel(),
    });
    return u;
  }

  /** Write frames, honouring flow control, until done or the call ends. */
  static async pump(u: RawUpload, frames: Iterable<Record<string, unknown> | Buffer>, end = true): Promise<void> {
    for (const f of frames) {
      if (u.settled) return;
      if (!u.write(f)) await new Promise<void>((r) => {
        const done = () => {
          u.call.off('drain', done);
          r();
        };
        u.call.on('drain', done);
        void u.result.then(done);
      });
    }
    if (end && !u.settled) u.end();
  }

  close(): void {
    this.client.close();
  }
}

/** Frames of a valid upload of float32 `values` (one per tensor of `layout`), cut into chunks of `chunkBytes`. */
export function updateFrames(
  header: { task_id: string; round: number; num_examples: number; metrics?: Record<string, number> },
  layout: Map<string, number[]>, value: (name: string, i: number) => number, chunkBytes = 256,
): Array<Record<string, unknown>> {
  const tensors: Array<{ name: string; dtype: string; shape: number[] }> = [];
  const parts: Float32Array[] = [];
  for (const [name, shape] of layout) {
    const n = shape.reduce((a, b) => a * b, 1);
    const d = new Float32Array(n);
    for (let i = 0; i < n; i++) d[i] = value(name, i);
    parts.push(d);
    tensors.push({ name, dtype: 'F32', shape });
  }
  const payload = Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)));
  const digest = createHash('sha256').update(payload).digest();
  const frames: Array<Record<string, unknown>> = [
    { header: { ...header, metrics: header.metrics ?? {}, manifest: { tensors, total_bytes: payload.length, checksum_algorithm: 'sha256' } } },
  ];
  for (let off = 0; off < payload.length; off += chunkBytes) frames.push({ chunk: { offset: off, data: payload.subarray(off, off + chunkBytes) } });
  frames.push({ trailer: { checksum_algorithm: 'sha256', checksum: digest } });
  return frames;
}

/** The manifest of a layout (for JoinRequest.decoder). */
export function layoutManifest(layout: Map<string, number[]>): Record<string, unknown> {
  let total = 0;
  const tensors = [...layout].map(([name, shape]) => {
    total += shape.reduce((a, b) => a * b, 1) * 4;
    return { name, dtype: 'F32', shape };
  });
  return { tensors, total_bytes: total, checksum_algorithm: 'sha256' };
}

/** Resident set size of a process (Linux /proc), in MB. */
export async function rssMb(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(s);
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) / 1024;
}
