// gRPC handlers: thin adapters (authentication, framing, status codes) over Coordinator and ClientRegistry.
import { onceAny } from '@fedsam/shared/fsutil';
import type { PeerCertificate } from 'node:tls';
import { status } from '@grpc/grpc-js';
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { CHECKSUM_ALGORITHMS, pickChecksum } from '@fedsam/shared/transfer/checksum';
import { DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, TransferDecoder } from '@fedsam/shared/transfer/codec';
import { TransferError } from '@fedsam/shared/transfer/errors';
import { layoutFromManifest, sameLayout } from '@fedsam/shared/transfer/manifest';
import { METADATA_SESSION, type AbandonRequest, type DownloadFrame, type DownloadRequest, type EvaluationResult, type GetTaskRequest, type JoinRequest, type JoinResponse, type LeaveRequest, type SubmitResponse, type Task, type UpdateFrame, type UpdateHeader } from '@fedsam/shared/transfer/messages';
import type { SiteAuthenticator } from './auth.ts';
import type { ClientRegistry } from './clients.ts';
import type { ServerConfig } from './config.ts';
import type { Coordinator, TaskSlot } from './coordinator.ts';
import { asFedError, failedPrecondition, FedError, invalidArgument, permissionDenied } from './errors.ts';
import type { ServerMetrics } from './metrics.ts';
import { GlobalDownloads } from './downloads.ts';
import { Malformed, type PreEncoded } from './proto.ts';
import { deadlineExceeded, limitReadAhead, nextWithin, transportStatus, TransferGate } from './transfers.ts';

/** What a call carries that says who it is. */
type CallCredentials = { metadata: grpc.Metadata; getAuthContext?: () => { sslPeerCertificate?: PeerCertificate } | null };

export interface ServiceDeps {
  config: ServerConfig;
  coordinator: Coordinator;
  registry: ClientRegistry;
  auth: SiteAuthenticator;
  metrics: ServerMetrics;
  logger: Logger;
}

const short = (h: string) => (h ? (h.length > 16 ? `${h.slice(0, 16)}...` : h) : '(none)');

/** A write stream has room again (or ended: then the next write fails and the call reports why). */
const waitWritable = (stream: NodeJS.EventEmitter): Promise<void> => onceAny(stream, ['drain', 'close', 'cancelled', 'error', 'finish']);

export function createHandlers(d: ServiceDeps): grpc.UntypedServiceImplementation {
  const { config, coordinator, registry, auth, metrics, logger: log } = d;
  const transfers = new TransferGate(config.limits);
  // Uploads are received into the strategy's aggregator's buffers (the fold arena for streaming strategies).
  const aggregator = coordinator.strategy.aggregator;
  const chunkBytes = Math.min(config.limits.chunk_bytes ?? DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES);
  const downloads = new GlobalDownloads(coordinator, chunkBytes);

  /** The site of a call: from its client certificate (mutual TLS) and/or its token. */
  const identify = (call: CallCredentials): string => auth.authenticate(call.metadata, call.getAuthContext?.()?.sslPeerCertificate);

  /** Authenticated site with a live session. */
  const authed = (call: CallCredentials): string => {
    const site = identify(call);
    const sid = call.metadata.get(METADATA_SESSION)[0];
    registry.touch(site, typeof sid === 'string' ? sid : undefined);
    return site;
  };

  const refused = (rpc: string, e: unknown, peer: string, site?: string): Partial<grpc.ServiceError> => {
    const fe = asFedError(e);
    log.warn({ event: 'request_refused', rpc, site, peer, round: coordinator.currentRound, code: fe.code, reason: fe.reason, err: fe.message }, 'request refused');
    return fe.toServiceError();
  };

  const handlers: grpc.UntypedServiceImplementation = {
    Join(call: grpc.ServerUnaryCall<JoinRequest, JoinResponse>, cb: grpc.sendUnaryData<JoinResponse>) {
      let site: string | undefined;
      try {
        site = identify(call);
        const req = call.request;
        if (req.site && req.site !== site) {
          throw permissionDenied('site_mismatch', `this ${config.tls?.client_ca ? 'certificate' : 'token'} belongs to site ${site}, not to "${req.site}"`);
        }
        if (req.base_model_hash !== coordinator.baseModelHash) {
          throw failedPrecondition(
            'base_model_mismatch',
            `base model hash ${short(req.base_model_hash)} differs from the server's ${short(coordinator.baseModelHash)}: ` +
              `this site's frozen encoders (vision_encoder, prompt_encoder, shared_image_embedding) are not the server's base model`,
          );
        }
        if (!req.decoder) throw invalidArgument('bad_manifest', 'JoinRequest.decoder (the site decoder layout) is missing');
        const problem = sameLayout(layoutFromManifest(req.decoder), coordinator.layout);
        if (problem) throw failedPrecondition('decoder_mismatch', `the site's mask decoder does not match the global decoder: ${problem.message}`);
        const s = registry.join(site, call.getPeer());
        metrics.clientsConnected.set(registry.count);
        log.info({ event: 'site_joined', site, round: coordinator.currentRound, peer: call.getPeer(), client_version: req.client_version }, 'site joined');
        cb(null, {
          session_id: s.id,
          site,
          heartbeat_interval_ms: Math.round(config.heartbeat_interval_s * 1000),
          current_round: coordinator.currentRound,
          long_poll_ms: Math.round(config.long_poll_s * 1000),
          checksum_algorithms: [...CHECKSUM_ALGORITHMS],
        });
      } catch (e) {
        cb(refused('Join', e, call.getPeer(), site));
      }
    },

    Heartbeat(call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) {
      try {
        authed(call);
        cb(null, { current_round: coordinator.currentRound });
      } catch (e) {
        cb(asFedError(e).toServiceError());
      }
    },

    GetTask(call: grpc.ServerUnaryCall<GetTaskRequest, Task>, cb: grpc.sendUnaryData<Task>) {
      let site: string | undefined;
      (async () => {
        site = authed(call);
        const maxWait = config.long_poll_s * 1000;
        const waitMs = Math.min(maxWait, Number(call.request.wait_ms) > 0 ? Number(call.request.wait_ms) : maxWait);
        const ac = new AbortController();
        call.on('cancelled', () => ac.abort());
        const deadline = Date.now() + waitMs;
        for (;;) {
          const t = coordinator.taskFor(site);
          if (t) {
            if (t.kind !== 'shutdown') log.info({ event: 'task_sent', site, round: t.round, kind: t.kind, task_id: t.task_id }, 'task sent');
            return t;
          }
          const left = deadline - Date.now();
          if (left <= 0 || ac.signal.aborted) break;
          await coordinator.waitForChange(left, ac.signal);
          if (!registry.has(site)) throw failedPrecondition('stale_session', 'session ended while waiting for a task: Join again');
        }
        const idle: Task = { task_id: '', round: coordinator.currentRound, global_version: coordinator.globalVersion, idle: {} };
        return idle;
      })().then(
        (t) => cb(null, t),
        (e) => cb(refused('GetTask', e, call.getPeer(), site)),
      );
    },

    DownloadGlobal(call: grpc.ServerWritableStream<DownloadRequest, DownloadFrame>) {
      let site: string | undefined;
      let leave: (() => void) | undefined;
      let release: (() => void) | undefined;
      let timer: NodeJS.Timeout | undefined;
      const ac = new AbortController();
      const onCancel = () => ac.abort(new FedError(status.CANCELLED, 'cancelled', 'the site cancelled the download'));
      call.once('cancelled', onCancel);
      (async () => {
        site = authed(call);
        leave = transfers.open('download', site);
        const req = call.request;
        const dtype = req.dtype === 'F16' ? 'F16' : 'F32';
        release = await transfers.permit('download', ac.signal);
        const snap = downloads.get(dtype, pickChecksum(req.checksum_algorithms));
        if (req.expected_version && req.expected_version !== snap.version) {
          throw failedPrecondition('stale_version', `the global decoder is at version ${snap.version} (round ${snap.round}), not ${req.expected_version}`);
        }
        const ms = transfers.transferMs(snap.encoded.payload.length);
        timer = setTimeout(() => ac.abort(deadlineExceeded('download_timeout', `the ${snap.encoded.payload.length}-byte download took longer than ${(ms / 1000).toFixed(0)} s`)), ms);
        const aborted = new Promise<void>((r) => ac.signal.addEventListener('abort', () => r(), { once: true }));
        const write = async (f: DownloadFrame | PreEncoded): Promise<void> => {
          if (ac.signal.aborted) throw ac.signal.reason;
          if (!call.write(f as DownloadFrame)) await Promise.race([waitWritable(call), aborted]);
          if (ac.signal.aborted) throw ac.signal.reason;
        };
        await write({ header: { round: snap.round, version: snap.version, manifest: snap.encoded.manifest } });
        for (const f of snap.frames) await write(f);
        call.end();
        metrics.sent(site, snap.encoded.payload.length);
        log.debug({ event: 'global_sent', site, round: snap.round, version: snap.version, dtype, bytes: snap.encoded.payload.length }, 'global decoder sent');
      })().catch((e) => {
        if (!call.cancelled) call.emit('error', refused('DownloadGlobal', e, call.getPeer(), site));
      }).finally(() => {
        clearTimeout(timer);
        call.off('cancelled', onCancel);
        release?.();
        leave?.();
      });
    },

    SubmitUpdate(call: grpc.ServerReadableStream<UpdateFrame, SubmitResponse>, cb: grpc.sendUnaryData<SubmitResponse>) {
      let site: string | undefined;
      let slot: TaskSlot | undefined;
      let header: UpdateHeader | undefined;
      let release: (() => void) | undefined;
      let leave: (() => void) | undefined;
      let receiveBuffer: Uint8Array | undefined;
      // Ends the upload when its round closes or the site is dropped (the coordinator changes state).
      const ac = new AbortController();
      const onChange = () => {
        if (slot && !coordinator.isReceiving(slot)) {
          ac.abort(failedPrecondition('stale_round', `round ${header?.round} closed (or site ${site} was dropped from it) while its update was being received`));
        }
      };
      limitReadAhead(call, 0);
      (async () => {
        site = authed(call);
        leave = transfers.open('upload', site);
        const it = call[Symbol.asyncIterator]() as AsyncIterator<UpdateFrame | Malformed>;
        const first = await nextWithin(it, transfers.headerMs, ac.signal, 'header_timeout', 'the UpdateHeader');
        const f0 = first.done ? undefined : frame(first.value);
        if (!f0 || f0.frame !== 'header' || !f0.header) throw invalidArgument('protocol', 'SubmitUpdate must start with an UpdateHeader frame');
        header = f0.header;
        slot = coordinator.beginUpdate(site, header);
        coordinator.on('change', onChange);
        release = await transfers.permit('upload', ac.signal);
        const total = Number(header.manifest!.total_bytes);
        const end = Date.now() + transfers.transferMs(total);
        receiveBuffer = aggregator.takeReceiveBuffer(total);
        const dec = new TransferDecoder(header.manifest!, { checkFinite: true, into: receiveBuffer, scanFinite: aggregator.scanFinite });
        let trailer;
        try {
          for (;;) {
            const left = end - Date.now();
            const last = left < transfers.chunkMs;
            const r = await nextWithin(it, Math.min(transfers.chunkMs, left), ac.signal, last ? 'transfer_timeout' : 'chunk_timeout',
              last ? `the rest of the ${total}-byte update (${dec.bytesReceived} received)` : 'the next frame of the update');
            if (r.done) break;
            const f = frame(r.value);
            if (trailer) throw invalidArgument('protocol', 'frames after the trailer');
            if (f.frame === 'chunk') dec.push(f.chunk);
            else if (f.frame === 'trailer') trailer = f.trailer;
            else throw invalidArgument('protocol', 'a second UpdateHeader in one SubmitUpdate stream');
          }
          metrics.received(site, dec.bytesReceived);
          const weights = dec.finish(trailer);
          const buffer = receiveBuffer;
          coordinator.acceptUpdate(slot, header, weights, () => aggregator.giveReceiveBuffer(buffer));
          receiveBuffer = undefined; // the aggregator gives it back
        } catch (e) {
          if (e instanceof TransferError) {
            const reason = e.kind === 'checksum' || e.kind === 'nonfinite' ? e.kind : `transfer_${e.kind}`;
            throw invalidArgument(reason, `update refused: ${e.message}`);
          }
          throw e;
        }
        return { accepted: true, message: `update for round ${header.round} accepted` };
      })().then(
        (res) => {
          done();
          cb(null, res);
        },
        (e) => {
          done();
          if (receiveBuffer) aggregator.giveReceiveBuffer(receiveBuffer);
          const fe = uploadError(call, e);
          if (site) coordinator.refuseUpdate(site, slot, fe, header ? Number(header.round) : undefined);
          else log.warn({ event: 'request_refused', rpc: 'SubmitUpdate', peer: call.getPeer(), code: fe.code, reason: fe.reason, err: fe.message }, 'request refused');
          cb(fe.toServiceError());
        },
      );
      function done() {
        coordinator.off('change', onChange);
        release?.();
        leave?.();
      }
    },

    SubmitEvaluation(call: grpc.ServerUnaryCall<EvaluationResult, SubmitResponse>, cb: grpc.sendUnaryData<SubmitResponse>) {
      let site: string | undefined;
      try {
        site = authed(call);
        coordinator.acceptEvaluation(site, call.request);
        cb(null, { accepted: true, message: `evaluation for round ${call.request.round} accepted` });
      } catch (e) {
        const fe = asFedError(e);
        if (site) coordinator.refuseEvaluation(site, fe, Number(call.request.round));
        cb(fe.toServiceError());
      }
    },

    AbandonTask(call: grpc.ServerUnaryCall<AbandonRequest, SubmitResponse>, cb: grpc.sendUnaryData<SubmitResponse>) {
      try {
        const site = authed(call);
        const ok = coordinator.abandon(site, call.request.task_id, call.request.reason || 'no reason given');
        cb(null, { accepted: ok, message: ok ? 'task released' : 'no such open task' });
      } catch (e) {
        cb(refused('AbandonTask', e, call.getPeer()));
      }
    },

    Leave(call: grpc.ServerUnaryCall<LeaveRequest, unknown>, cb: grpc.sendUnaryData<unknown>) {
      try {
        const site = identify(call);
        const sid = call.metadata.get(METADATA_SESSION)[0];
        if (typeof sid === 'string') registry.leave(site, sid, `left: ${call.request.reason || 'no reason given'}`);
        metrics.clientsConnected.set(registry.count);
        log.info({ event: 'site_left', site, round: coordinator.currentRound, reason: call.request.reason }, 'site left');
        cb(null, {});
      } catch (e) {
        cb(refused('Leave', e, call.getPeer()));
      }
    },
  };

  // Requests protobuf could not decode (proto.ts makes them Malformed): INVALID_ARGUMENT, not grpc-js's INTERNAL.
  const malformed = (rpc: string, call: { request?: unknown; getPeer(): string }) =>
    call.request instanceof Malformed ? refused(rpc, invalidArgument('malformed', `not a valid ${rpc} request message: ${call.request.problem}`), call.getPeer()) : undefined;
  for (const rpc of ['Join', 'Heartbeat', 'GetTask', 'SubmitEvaluation', 'AbandonTask', 'Leave'] as const) {
    const h = handlers[rpc] as (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => void;
    handlers[rpc] = (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      const bad = malformed(rpc, call);
      if (bad) cb(bad);
      else h(call, cb);
    };
  }
  const download = handlers.DownloadGlobal as (call: grpc.ServerWritableStream<unknown, unknown>) => void;
  handlers.DownloadGlobal = (call: grpc.ServerWritableStream<unknown, unknown>) => {
    const bad = malformed('DownloadGlobal', call);
    if (bad) call.emit('error', bad);
    else download(call);
  };
  return handlers;
}

/** A decoded upload frame, or INVALID_ARGUMENT for bytes that are no UpdateFrame. */
function frame(f: UpdateFrame | Malformed): UpdateFrame {
  if (f instanceof Malformed) throw invalidArgument('malformed', `not a valid UpdateFrame message: ${f.problem}`);
  return f;
}

/**
 * Why an upload ended: a FedError as thrown, or the status gRPC answered itself (a message over the size limit:
 * RESOURCE_EXHAUSTED), or the site cancelling; INTERNAL only for what is none of these.
 */
function uploadError(call: grpc.ServerReadableStream<UpdateFrame, SubmitResponse>, e: unknown): FedError {
  if (e instanceof FedError) return e;
  if (call.cancelled) {
    const t = transportStatus(call);
    if (t && t.code === status.RESOURCE_EXHAUSTED) return new FedError(t.code, 'too_large', `update refused: ${t.details}`);
    if (t && t.code !== status.OK) return new FedError(t.code, 'transport', t.details);
    return new FedError(status.CANCELLED, 'cancelled', 'the site cancelled the upload (or its connection ended)');
  }
  return asFedError(e);
}

export { FedError };
