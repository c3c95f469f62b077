// runServer: the aggregation daemon (gRPC service + round driver + persistence + /metrics).
import { isDirectory, pathExists } from '@fedsam/shared/fsutil';
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { logger as sharedLogger } from '@fedsam/shared/log';
import type { SamConfig } from '@fedsam/shared/config';
import { loadSamCheckpoint } from '@fedsam/shared/checkpoint/load';
import { DEFAULT_MODEL, fineTuneDefaults, modelFolder } from '@fedsam/shared/model/builtin';
import { saveSamCheckpoint } from '@fedsam/shared/checkpoint/save';
import { readSafetensors, type HostTensor } from '@fedsam/shared/safetensors';
import { frozenEncodersHash } from '@fedsam/shared/checkpoint/baseModelHash';
import { layoutOf, sameLayout } from '@fedsam/shared/transfer/manifest';
import { SiteAuthenticator } from './auth.ts';
import { ClientRegistry } from './clients.ts';
import { parseListen, parseServerConfig, ServerConfigError, type ServerConfig, type ServerConfigInput } from './config.ts';
import { Coordinator } from './coordinator.ts';
import { ServerMetrics } from './metrics.ts';
import { fedsamServiceDefinition } from './proto.ts';
import { createHandlers } from './service.ts';
import { raiseServerFlowControlWindow } from './http2-tuning.ts';
import { StateStore, type RoundRecord } from './state.ts';
import { createStrategy } from './strategy/index.ts';
import { followFederation, serveFederation } from './dashboard/attach.ts';
import type { FederationView } from './dashboard/federationView.ts';
import { DashboardConfigError, type DashboardHandle } from '@fedsam/shared/web/dashboardServer';
import { ReloadableServerCredentials } from './pki/credentials.ts';
import { crlSerials } from './pki/certificates.ts';

export interface RunServerOptions {
  logger?: Logger;
  /** Initial global decoder given in memory (instead of base_model / initial_decoder); needs base_model_hash. */
  initialDecoder?: Map<string, HostTensor>;
  /** SAM config for writing round folders in HF layout when the decoder is given in memory. */
  samConfig?: SamConfig;
}

export interface ServerResult {
  /** Last completed round. */
  round: number;
  globalVersion: string;
  history: RoundRecord[];
  outDir: string;
  /** true when stop() ended the run before all rounds were done. */
  stopped: boolean;
}

export interface ServerHandle {
  /** Bound gRPC port (useful with listen port 0). */
  port: number;
  address: string;
  metricsPort: number | undefined;
  config: ServerConfig;
  coordinator: Coordinator;
  /** The federation's state as the dashboard shows it (also without a dashboard: simulate draws it on the console). */
  view: FederationView;
  /** The dashboard's address, when it is served. */
  dashboardUrl: string | undefined;
  /** Settles when the run ends (all rounds done and sites told to shut down, or stop()). */
  done: Promise<ServerResult>;
  /** Stop now (the last completed round stays on disk for --resume). */
  stop(reason?: string): Promise<ServerResult>;
  /** Read tls files again (the CRL after `fedsam provision --revoke`); the CLI calls it on SIGHUP. */
  reload(): Promise<void>;
}

interface InitialModel {
  decoder: Map<string, HostTensor>;
  baseModelHash: string;
  samConfig: SamConfig | undefined;
}

function onlyDecoder(weights: Map<string, HostTensor>, source: string): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const [n, t] of weights) if (n.startsWith('mask_decoder.')) out.set(n, t);
  if (out.size === 0) throw new ServerConfigError(`${source}: no mask_decoder.* tensors`);
  for (const [n, t] of out) if (t.dtype !== 'float32') throw new ServerConfigError(`${source}: ${n} is ${t.dtype}, expected float32`);
  return out;
}

async function loadInitialModel(cfg: ServerConfig, opts: RunServerOptions, log: Logger): Promise<InitialModel> {
  if (opts.initialDecoder) {
    if (!cfg.base_model_hash) throw new ServerConfigError('an in-memory initial decoder needs base_model_hash');
    return { decoder: onlyDecoder(opts.initialDecoder, 'initial decoder'), baseModelHash: cfg.base_model_hash, samConfig: opts.samConfig };
  }
  if (cfg.base_model) {
    const ck = await loadSamCheckpoint(modelFolder(cfg.base_model), { onWarning: (m) => log.warn({ event: 'checkpoint_warning' }, m) });
    const hash = frozenEncodersHash(ck.weights);
    if (cfg.base_model_hash && cfg.base_model_hash !== hash) {
      throw new ServerConfigError(`base_model ${cfg.base_model} has frozen-encoder hash ${hash}, but base_model_hash says ${cfg.base_model_hash}`);
    }
    log.info({ event: 'base_model_loaded', base_model: cfg.base_model, base_model_hash: hash }, 'base model loaded');
    return { decoder: onlyDecoder(ck.weights, cfg.base_model), baseModelHash: hash, samConfig: ck.config };
  }
  if (cfg.initial_decoder) {
    if (!cfg.base_model_hash) throw new ServerConfigError('initial_decoder needs base_model_hash (the frozen encoders the sites must have)');
    if (await isDirectory(cfg.initial_decoder)) {
      const ck = await loadSamCheckpoint(cfg.initial_decoder, { parts: ['mask_decoder'] });
      return { decoder: onlyDecoder(ck.weights, cfg.initial_decoder), baseModelHash: cfg.base_model_hash, samConfig: ck.config };
    }
    const { tensors } = await readSafetensors(cfg.initial_decoder);
    return { decoder: onlyDecoder(tensors, cfg.initial_decoder), baseModelHash: cfg.base_model_hash, samConfig: undefined };
  }
  throw new ServerConfigError('no initial model: set base_model (a SAM folder), or initial_decoder + base_model_hash');
}

/** Serial numbers of revoked client certificates (tls.crl), checked against the client CA. */
async function revokedSerials(cfg: ServerConfig): Promise<string[]> {
  if (!cfg.tls?.crl) return [];
  if (!cfg.tls.client_ca) throw new ServerConfigError('tls.crl needs tls.client_ca (the CA whose certificates it revokes)');
  try {
    return await crlSerials(await readFile(cfg.tls.crl, 'utf8'), await readFile(cfg.tls.client_ca, 'utf8'));
  } catch (e) {
    throw new ServerConfigError(`tls.crl ${cfg.tls.crl}: ${(e as Error).message}`);
  }
}

export async function runServer(input: ServerConfigInput | ServerConfig, opts: RunServerOptions = {}): Promise<ServerHandle> {
  const cfg = parseServerConfig(input);
  const log = opts.logger ?? sharedLogger('server');
  if (cfg.sites.length === 0) throw new ServerConfigError('no sites configured: add sites [{name, token_sha256}] (or --site NAME:SHA256)');

  const init = await loadInitialModel(cfg, opts, log);
  // fit.lr and fit.box_jitter null: the base model's own (the built-in model's, else the SAM recipe's)
  const defaults = fineTuneDefaults(cfg.base_model === DEFAULT_MODEL);
  cfg.fit.lr ??= defaults.lr;
  cfg.fit.box_jitter ??= defaults.boxJitter;
  const strategy = createStrategy(cfg.strategy, cfg);
  const metrics = new ServerMetrics();
  const registry = new ClientRegistry(cfg.heartbeat_timeout_s * 1000);
  await mkdir(cfg.out_dir, { recursive: true });
  const store = new StateStore(cfg.out_dir, init.samConfig, cfg.keep_rounds);
  const coordinator = new Coordinator({
    config: cfg, strategy, store, registry, metrics, logger: log, baseModelHash: init.baseModelHash, initialGlobal: strategy.initialize() ?? init.decoder,
  });

  const view = followFederation(coordinator, registry, metrics, cfg);

  if (await store.hasState()) {
    if (!cfg.resume) {
      const s = await store.readState();
      throw new ServerConfigError(`${store.statePath} holds a previous run (round ${s.round}): pass --resume to continue it, or use another out_dir`);
    }
    const state = await store.readState();
    if (state.base_model_hash !== init.baseModelHash) {
      throw new ServerConfigError(`cannot resume: ${store.statePath} was written for base model ${state.base_model_hash}, the server now has ${init.baseModelHash}`);
    }
    if (state.strategy.name !== strategy.name) {
      throw new ServerConfigError(`cannot resume: ${store.statePath} was written by strategy ${state.strategy.name}, the config says ${strategy.name}`);
    }
    const { global, strategy: sstate } = await store.loadRound(state);
    if (sameLayout(layoutOf(global), layoutOf(init.decoder))) throw new ServerConfigError(`cannot resume: the saved global decoder does not match the base model's decoder layout`);
    strategy.loadState(sstate);
    coordinator.restore(state.round, global, state.history, state.global_version);
    view.restore(state.history, state.round);
    log.info({ event: 'resumed', round: state.round, global_version: state.global_version, out_dir: cfg.out_dir }, `resuming after round ${state.round}`);
  } else if (cfg.resume) {
    log.info({ event: 'resume_nothing', out_dir: cfg.out_dir }, 'no saved state: starting at round 1');
  }

  // gRPC
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 4 * 1024 * 1024 });
  const tuned = raiseServerFlowControlWindow(server, cfg.limits.stream_window_bytes, cfg.limits.connection_window_bytes);
  if (!tuned) log.debug({ event: 'http2_tuning_skipped' }, 'grpc-js internals changed: default HTTP/2 windows (slower uploads)');
  const auth = new SiteAuthenticator(cfg.sites, !!cfg.tls?.client_ca);
  auth.setRevoked(await revokedSerials(cfg));
  server.addService(fedsamServiceDefinition(), createHandlers({ config: cfg, coordinator, registry, auth, metrics, logger: log }));
  const { host } = parseListen(cfg.listen);
  let creds: ReloadableServerCredentials | undefined;
  try {
    creds = cfg.tls ? await ReloadableServerCredentials.load(cfg.tls) : undefined;
  } catch (e) {
    throw new ServerConfigError(`tls: ${(e as Error).message}`);
  }
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(cfg.listen, creds ?? grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(new Error(`cannot listen on ${cfg.listen}: ${err.message}`)) : resolve(p)));
  });
  let metricsServer: import('node:http').Server | undefined;
  let metricsPort: number | undefined;
  try {
    if (cfg.metrics) ({ server: metricsServer, port: metricsPort } = await metrics.listen(cfg.metrics.host, cfg.metrics.port));
  } catch (e) {
    server.forceShutdown();
    throw new ServerConfigError(`cannot serve /metrics on ${cfg.metrics!.host}:${cfg.metrics!.port}: ${(e as Error).message}`);
  }
  let dashboard: DashboardHandle | undefined;
  try {
    if (cfg.dashboard) dashboard = await serveFederation(view, cfg.dashboard, cfg.tls, log);
  } catch (e) {
    server.forceShutdown();
    metricsServer?.close();
    throw e instanceof DashboardConfigError ? new ServerConfigError(e.message) : e;
  }
  registry.startSweeper();
  if (!cfg.tls && !['127.0.0.1', 'localhost', '::1'].includes(host)) {
    log.warn({ event: 'plaintext', listen: cfg.listen }, 'no TLS: site tokens and weights cross the network in clear text (set tls.cert / --tls-cert)');
  }
  log.info({ event: 'server_started', listen: cfg.listen, port, tls: !!cfg.tls, metrics_port: metricsPort, strategy: strategy.name, rounds: cfg.rounds, round: coordinator.round, sites: cfg.sites.map((s) => s.name), base_model_hash: init.baseModelHash }, 'fedsam server listening');

  const ac = new AbortController();
  let stopped = false;

  const shutdownTransports = async () => {
    registry.stopSweeper();
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, 2000);
      server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
    view.stopped();
    await dashboard?.close();
    if (metricsServer) {
      metricsServer.closeAllConnections?.();
      await new Promise<void>((r) => metricsServer!.close(() => r()));
    }
  };

  const done = (async (): Promise<ServerResult> => {
    try {
      await coordinator.run(ac.signal);
      // Let connected sites pick up their shutdown task and leave.
      const graceEnd = Date.now() + cfg.shutdown_grace_s * 1000;
      while (registry.count > 0 && Date.now() < graceEnd && !ac.signal.aborted) {
        await new Promise((r) => setTimeout(r, 50));
      }
      if (cfg.export_merged && cfg.base_model) {
        const ck = await loadSamCheckpoint(modelFolder(cfg.base_model));
        const merged = new Map(ck.weights);
        for (const [n, t] of coordinator.globalWeights) merged.set(n, t);
        await saveSamCheckpoint(cfg.export_merged, ck.config, merged);
        // how the base model's inputs are prepared (its resize, and fedsam_box_crop) goes along with it
        const pp = join(modelFolder(cfg.base_model), 'preprocessor_config.json');
        if (await pathExists(pp)) await copyFile(pp, join(cfg.export_merged, 'preprocessor_config.json'));
        log.info({ event: 'merged_exported', round: coordinator.round, dir: cfg.export_merged }, 'merged model exported');
      }
    } catch (e) {
      if (!ac.signal.aborted) {
        log.error({ event: 'server_failed', round: coordinator.currentRound, err: (e as Error).message }, 'server run failed');
        await shutdownTransports();
        throw e;
      }
    }
    await shutdownTransports();
    log.info({ event: 'server_stopped', round: coordinator.round, stopped }, 'fedsam server stopped');
    return { round: coordinator.round, globalVersion: coordinator.globalVersion, history: coordinator.history, outDir: cfg.out_dir, stopped };
  })();

  return {
    port,
    address: `${host.includes(':') ? `[${host}]` : host}:${port}`,
    metricsPort,
    config: cfg,
    coordinator,
    view,
    dashboardUrl: dashboard?.url,
    done,
    async reload() {
      if (!cfg.tls) return;
      const serials = await revokedSerials(cfg);
      await creds!.reload();
      auth.setRevoked(serials);
      const ended = auth.revokedSites().filter((site) => registry.has(site));
      for (const site of ended) registry.drop(site, 'certificate revoked');
      log.info({ event: 'tls_reloaded', revoked: serials.length, sessions_ended: ended }, 'TLS files read again');
    },
    async stop(reason = 'stop requested') {
      if (!ac.signal.aborted) {
        stopped = true;
        log.info({ event: 'server_stopping', round: coordinator.currentRound, reason }, 'stopping');
        ac.abort(new Error(reason));
      }
      return done;
    },
  };
}
