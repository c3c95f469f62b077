// The site daemon: join, heartbeat, fetch tasks, train/evaluate with the local engine, upload. Reconnects with
// exponential backoff + jitter while the server is away; stop() (SIGTERM) ends cleanly.
import { status, type ServiceError } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { logger as sharedLogger } from '@fedsam/shared/log';
import { abortableSleep } from '@fedsam/shared/abortableSleep';
import type { HostTensor } from '@fedsam/shared/safetensors';
import { findNonFinite, type EncodedTransfer } from '@fedsam/shared/transfer/codec';
import { manifestOfLayout } from '@fedsam/shared/transfer/manifest';
import type { Task, WireDtype } from '@fedsam/shared/transfer/messages';
import type { FitConfig, LocalEngine } from '../engine/localEngine.ts';
import { Connection, type ConnectionOptions, type TlsOptions } from './connection.ts';
import { collectGarbage } from './heap.ts';
import { fitConfigFromWire, InvalidFitConfigError } from './fitConfig.ts';

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  factor: number;
}

export type ClientEvent =
  | { type: 'joined'; site: string; round: number }
  | { type: 'task'; task: Task }
  | { type: 'fit_done'; round: number; numExamples: number; metrics: Record<string, number>; weights: Map<string, HostTensor> }
  | { type: 'update_accepted'; round: number }
  | { type: 'update_refused'; round: number; code: number; message: string }
  | { type: 'evaluated'; round: number; numExamples: number; metrics: Record<string, number> }
  | { type: 'disconnected'; error: string; retryInMs: number }
  | { type: 'shutdown'; reason: string };

export interface RunClientOptions {
  /** host:port of the aggregation server. */
  server: string;
  /** Optional with a client certificate (tls.cert / tls.key), which then names the site. */
  token?: string;
  /** The site name this daemon expects to be (the server checks it against its certificate's or token's site). */
  site?: string;
  engine: LocalEngine;
  logger?: Logger;
  tls?: boolean | TlsOptions;
  /** Wire dtype of downloads / uploads (F32 default; F16 halves the bytes but rounds the weights). */
  downloadDtype?: WireDtype;
  uploadDtype?: WireDtype;
  chunkBytes?: number;
  backoff?: Partial<BackoffOptions>;
  /** Give up after this many consecutive failed connection attempts (default: never). */
  maxReconnectAttempts?: number;
  /** Install SIGTERM/SIGINT handlers that call stop(). */
  handleSignals?: boolean;
  transferTimeoutMs?: number;
  rpcTimeoutMs?: number;
  /** Give up a local training that takes longer (abandon the task; the round goes on without this site). */
  fitTimeoutMs?: number;
  /** More grpc-js channel options. */
  channelOptions?: ConnectionOptions['channelOptions'];
  onEvent?: (e: ClientEvent) => void;
  clientVersion?: string;
}

export interface ClientResult {
  /** 'shutdown': the server finished training; 'stopped': stop() was called. */
  reason: 'shutdown' | 'stopped';
  site: string | undefined;
  roundsTrained: number[];
  roundsEvaluated: number[];
}

export interface ClientHandle {
  /** Rejects on fatal errors (bad token, different base model, ...), which are not retried. */
  done: Promise<ClientResult>;
  stop(reason?: string): Promise<ClientResult>;
}

/** Errors that retrying cannot fix. */
export class FatalClientError extends Error {
  override name = 'FatalClientError';
  constructor(message: string, readonly code?: number) {
    super(message);
  }
}

const isServiceError = (e: unknown): e is ServiceError => typeof e === 'object' && e !== null && 'code' in e && typeof (e as ServiceError).code === 'number';

class StopSignal extends Error {}

/** The promise, or a rejection after ms (none: no limit); what it would still produce is left to itself. */
function withTimeout<T>(p: Promise<T>, ms: number | undefined, what: string): Promise<T> {
  if (!ms) return p;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not finish within ${(ms / 1000).toFixed(1)} s`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** Full-range exponential backoff with jitter: uniform in [cap/2, cap], cap = min(max, initial * factor^attempt). */
export function backoffDelay(attempt: number, o: BackoffOptions, rand = Math.random): number {
  const cap = Math.min(o.maxMs, o.initialMs * Math.pow(o.factor, Math.max(0, attempt - 1)));
  return Math.round(cap / 2 + rand() * (cap / 2));
}

export function runClient(opts: RunClientOptions): ClientHandle {
  const log = opts.logger ?? sharedLogger('client');
  const backoff: BackoffOptions = { initialMs: 500, maxMs: 30_000, factor: 2, ...opts.backoff };
  const emit = (e: ClientEvent) => {
    try {
      opts.onEvent?.(e);
    } catch (err) {
      log.error({ event: 'on_event_failed', err: (err as Error).message }, 'onEvent handler threw');
    }
  };
  const stopCtl = new AbortController();
  let conn: Connection | undefined;
  let site: string | undefined = opts.site;
  let currentTask: Task | undefined;
  /** A finished fit waiting to be uploaded (kept across reconnects so training is not redone). */
  let pending: { taskId: string; round: number; enc: EncodedTransfer; numExamples: number; metrics: Record<string, number> } | undefined;
  const roundsTrained: number[] = [];
  const roundsEvaluated: number[] = [];
  const layout = opts.engine.decoderNames();
  const decoderManifest = manifestOfLayout(layout);

  const newConnection = () =>
    new Connection({ server: opts.server, token: opts.token, tls: opts.tls, chunkBytes: opts.chunkBytes, transferTimeoutMs: opts.transferTimeoutMs, rpcTimeoutMs: opts.rpcTimeoutMs, channelOptions: opts.channelOptions });

  /** One session: join, then tasks until shutdown. Throws on connection loss. */
  async function session(c: Connection): Promise<'shutdown'> {
    let joined;
    try {
      joined = await c.join({ site: opts.site ?? '', base_model_hash: opts.engine.baseModelHash, decoder: decoderManifest, client_version: opts.clientVersion ?? 'fedsam-client/0.1' });
    } catch (e) {
      if (isServiceError(e) && [status.UNAUTHENTICATED, status.PERMISSION_DENIED, status.FAILED_PRECONDITION, status.INVALID_ARGUMENT].includes(e.code)) {
        throw new FatalClientError(`the server refused to let this site join: ${e.details || e.message}`, e.code);
      }
      throw e;
    }
    site = joined.site;
    attempt = 0;
    log.info({ event: 'joined', site, round: joined.current_round }, 'joined the federation');
    emit({ type: 'joined', site: joined.site, round: joined.current_round });

    // heartbeats; a lost session aborts the session loop
    const sessionCtl = new AbortController();
    const onStop = () => sessionCtl.abort();
    stopCtl.signal.addEventListener('abort', onStop, { once: true });
    let sessionError: unknown;
    const hb = setInterval(() => {
      c.heartbeat().catch((e) => {
        if (isServiceError(e) && (e.code === status.UNAUTHENTICATED || e.code === status.UNAVAILABLE)) {
          sessionError = e;
          sessionCtl.abort();
        }
      });
    }, Math.max(100, joined.heartbeat_interval_ms));
    hb.unref();
    try {
      for (;;) {
        if (sessionCtl.signal.aborted) throw sessionError ?? new StopSignal();
        let task: Task;
        try {
          task = await c.getTask(joined.long_poll_ms, sessionCtl.signal);
        } catch (e) {
          throw sessionError ?? (stopCtl.signal.aborted ? new StopSignal() : e);
        }
        const kind = task.kind ?? (task.fit ? 'fit' : task.evaluate ? 'evaluate' : task.shutdown ? 'shutdown' : 'idle');
        if (kind === 'idle') continue;
        emit({ type: 'task', task });
        if (kind === 'shutdown') {
          const reason = task.shutdown?.reason ?? 'shutdown';
          log.info({ event: 'shutdown', site, round: task.round, reason }, 'server says: shut down');
          emit({ type: 'shutdown', reason });
          await c.leave(`shutdown: ${reason}`).catch(() => undefined);
          return 'shutdown';
        }
        currentTask = task;
        try {
          if (kind === 'fit') await fit(c, task, sessionCtl.signal);
          else await evaluate(c, task, sessionCtl.signal);
        } finally {
          currentTask = undefined;
        }
      }
    } finally {
      clearInterval(hb);
      stopCtl.signal.removeEventListener('abort', onStop);
    }
  }

  async function abandon(c: Connection, task: Task, reason: string): Promise<void> {
    log.warn({ event: 'task_abandoned', site, round: task.round, task_id: task.task_id, reason }, 'abandoning task');
    await c.abandonTask(task.task_id, reason).catch(() => undefined);
  }

  /** The global decoder a task is about; undefined when the server has moved on (the task is stale). */
  async function downloadFor(c: Connection, task: Task, signal: AbortSignal) {
    try {
      return await c.downloadGlobal({ dtype: opts.downloadDtype, expectedVersion: task.global_version, signal });
    } catch (e) {
      if (isServiceError(e) && e.code === status.FAILED_PRECONDITION) {
        log.warn({ event: 'task_stale', site, round: task.round, task_id: task.task_id, err: e.details }, 'task is stale; asking for the next one');
        return undefined;
      }
      throw e;
    }
  }

  async function fit(c: Connection, task: Task, signal: AbortSignal): Promise<void> {
    if (!pending || pending.taskId !== task.task_id) {
      pending = undefined;
      let cfg: FitConfig;
      try {
        cfg = fitConfigFromWire(task.fit?.config, task.round);
      } catch (e) {
        if (!(e instanceof InvalidFitConfigError)) throw e;
        await abandon(c, task, e.message);
        return;
      }
      const g = await downloadFor(c, task, signal);
      if (!g) return;
      log.info({ event: 'fit_started', site, round: task.round, config: cfg, global_version: g.version }, 'local training');
      let res;
      try {
        res = await withTimeout(opts.engine.fit(g.weights, cfg), opts.fitTimeoutMs, 'local training');
      } catch (e) {
        await abandon(c, task, `local training failed: ${(e as Error).message}`);
        return;
      }
      if (stopCtl.signal.aborted) throw new StopSignal();
      const bad = findNonFinite(res.weights);
      if (bad) {
        await abandon(c, task, `local training produced a non-finite value in ${bad.name}`);
        return;
      }
      emit({ type: 'fit_done', round: task.round, numExamples: res.numExamples, metrics: res.metrics, weights: res.weights });
      collectGarbage(); // now, not during the upload (heap.ts)
      pending = { taskId: task.task_id, round: task.round, enc: c.encodeUpdate(res.weights, opts.uploadDtype ?? 'F32'), numExamples: res.numExamples, metrics: res.metrics };
    }
    const p = pending;
    try {
      await c.submitUpdate({ task_id: task.task_id, round: task.round, num_examples: p.numExamples, metrics: p.metrics }, p.enc, signal);
      pending = undefined;
      c.recycle(p.enc.payload); // accepted: its buffer can take the next global
      roundsTrained.push(task.round);
      log.info({ event: 'update_accepted', site, round: task.round, num_examples: p.numExamples, metrics: p.metrics, bytes: p.enc.payload.length }, 'update uploaded');
      emit({ type: 'update_accepted', round: task.round });
    } catch (e) {
      if (isServiceError(e) && [status.INVALID_ARGUMENT, status.FAILED_PRECONDITION, status.PERMISSION_DENIED].includes(e.code)) {
        pending = undefined;
        log.error({ event: 'update_refused', site, round: task.round, code: e.code, err: e.details }, 'the server refused the update');
        emit({ type: 'update_refused', round: task.round, code: e.code, message: e.details });
        await abandon(c, task, `update refused: ${e.details}`);
        return;
      }
      throw e; // connection trouble: reconnect, then upload the kept result
    }
  }

  async function evaluate(c: Connection, task: Task, signal: AbortSignal): Promise<void> {
    const g = await downloadFor(c, task, signal);
    if (!g) return;
    let res;
    try {
      res = await opts.engine.evaluate(g.weights);
    } catch (e) {
      await abandon(c, task, `local evaluation failed: ${(e as Error).message}`);
      return;
    }
    if (stopCtl.signal.aborted) throw new StopSignal();
    try {
      await c.submitEvaluation({ task_id: task.task_id, round: task.round, num_examples: res.numExamples, metrics: res.metrics });
      roundsEvaluated.push(task.round);
      log.info({ event: 'evaluated', site, round: task.round, num_examples: res.numExamples, metrics: res.metrics }, 'evaluation submitted');
      emit({ type: 'evaluated', round: task.round, numExamples: res.numExamples, metrics: res.metrics });
    } catch (e) {
      if (isServiceError(e) && [status.INVALID_ARGUMENT, status.FAILED_PRECONDITION, status.PERMISSION_DENIED].includes(e.code)) {
        log.error({ event: 'evaluation_refused', site, round: task.round, code: e.code, err: e.details }, 'the server refused the evaluation');
        await abandon(c, task, `evaluation refused: ${e.details}`);
        return;
      }
      throw e;
    }
  }

  let attempt = 0;
  let signalHandler: (() => void) | undefined;
  const result = (reason: ClientResult['reason']): ClientResult => ({ reason, site, roundsTrained, roundsEvaluated });

  const done = (async (): Promise<ClientResult> => {
    try {
      for (;;) {
        if (stopCtl.signal.aborted) return result('stopped');
        conn = newConnection();
        try {
          await session(conn);
          return result('shutdown');
        } catch (e) {
          if (e instanceof FatalClientError) {
            log.error({ event: 'fatal', site, err: e.message }, 'cannot take part');
            throw e;
          }
          if (stopCtl.signal.aborted || e instanceof StopSignal) return result('stopped');
          // A stale/expired session: rejoin at once; anything else: back off.
          const staleSession = isServiceError(e) && e.code === status.UNAUTHENTICATED;
          attempt++;
          if (opts.maxReconnectAttempts !== undefined && attempt > opts.maxReconnectAttempts) {
            throw new FatalClientError(`giving up after ${attempt - 1} reconnection attempts: ${(e as Error).message}`);
          }
          const wait = staleSession && attempt === 1 ? 0 : backoffDelay(attempt, backoff);
          const msg = isServiceError(e) ? `${status[e.code] ?? e.code}: ${e.details}` : (e as Error).message;
          log.warn({ event: 'disconnected', site, err: msg, attempt, retry_in_ms: wait }, 'connection to the server lost; reconnecting');
          emit({ type: 'disconnected', error: msg, retryInMs: wait });
          conn.close();
          conn = undefined;
          await abortableSleep(wait, stopCtl.signal);
        }
      }
    } finally {
      conn?.close();
      if (signalHandler) {
        process.off('SIGTERM', signalHandler);
        process.off('SIGINT', signalHandler);
      }
    }
  })();

  const stop = async (reason = 'stopped'): Promise<ClientResult> => {
    if (!stopCtl.signal.aborted) {
      log.info({ event: 'stopping', site, reason }, 'stopping');
      const c = conn;
      const t = currentTask;
      if (c && t) await c.abandonTask(t.task_id, `site stopping: ${reason}`).catch(() => undefined);
      if (c?.sessionId) await c.leave(reason).catch(() => undefined);
      stopCtl.abort(new StopSignal(reason));
    }
    return done;
  };
  if (opts.handleSignals) {
    signalHandler = () => void stop('signal');
    process.once('SIGTERM', signalHandler);
    process.once('SIGINT', signalHandler);
  }
  return { done, stop };
}
