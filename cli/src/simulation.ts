// runSimulation: the aggregation server and N site daemons on loopback (real gRPC, clients in this process).
import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import type { SamConfig } from '@fedsam/shared/config';
import type { HostTensor } from '@fedsam/shared/safetensors';
import type { WireDtype } from '@fedsam/shared/transfer/messages';
import type { LocalEngine } from '@fedsam/client/engine/localEngine';
import { runClient, type ClientHandle, type ClientEvent } from '@fedsam/client/daemon/client';
import { hashToken } from '@fedsam/server/auth';
import type { ServerConfig, ServerConfigInput } from '@fedsam/server/config';
import { runServer, type ServerHandle } from '@fedsam/server/server';
import type { RoundRecord } from '@fedsam/server/state';
import type { StrategyConfigInput } from '@fedsam/server/strategy/index';

export interface SimulationSite {
  name: string;
  engineFactory: () => LocalEngine | Promise<LocalEngine>;
}

export interface SimulationOptions {
  sites: SimulationSite[];
  rounds: number;
  strategy?: StrategyConfigInput;
  fit?: Partial<ServerConfig['fit']>;
  /** Initial global decoder: a HF SAM folder... */
  baseModel?: string;
  /** ...or in-memory weights (mask_decoder.*); the base model hash then defaults to the first engine's. */
  initialDecoder?: Map<string, HostTensor>;
  samConfig?: SamConfig;
  baseModelHash?: string;
  /** Server state folder (default: a new temp folder). */
  outDir?: string;
  fractionFit?: number;
  minFitClients?: number;
  /** Evaluate the initial model as round 0 (default true). */
  evaluateInitial?: boolean;
  roundTimeoutS?: number;
  downloadDtype?: WireDtype;
  uploadDtype?: WireDtype;
  logger?: Logger;
  /** Extra server config (overrides). */
  server?: Partial<ServerConfigInput>;
  onRound?: (r: SimulationRound) => void;
  /** The server is up (its view and dashboard address), before the sites join. */
  onStarted?: (server: ServerHandle) => void;
  onClientEvent?: (site: string, e: ClientEvent) => void;
}

export interface SiteMetrics {
  dice: number | null;
  iou: number | null;
  num_examples: number;
  /** Dice of the site's Ditto personal model (fit.ditto_lambda). */
  personal_dice?: number;
}

export interface SimulationRound {
  round: number;
  /** Example-weighted mean dice over the evaluating sites (null when no site evaluated). */
  mean_dice: number | null;
  mean_iou: number | null;
  sites: Record<string, SiteMetrics>;
}

export interface SimulationResult {
  history: SimulationRound[];
  serverHistory: RoundRecord[];
  finalWeights: Map<string, HostTensor>;
  outDir: string;
}

export function toSimulationRound(r: RoundRecord): SimulationRound | undefined {
  if (!r.evaluate) return undefined;
  const sites: Record<string, SiteMetrics> = {};
  for (const [name, s] of Object.entries(r.evaluate.sites)) {
    sites[name] = { dice: s.metrics.dice ?? null, iou: s.metrics.iou ?? null, num_examples: s.num_examples,
      ...(s.metrics.personal_dice !== undefined ? { personal_dice: s.metrics.personal_dice } : {}) };
  }
  return { round: r.round, mean_dice: r.evaluate.metrics.dice ?? null, mean_iou: r.evaluate.metrics.iou ?? null, sites };
}

export async function runSimulation(o: SimulationOptions): Promise<SimulationResult> {
  if (o.sites.length === 0) throw new Error('runSimulation: no sites');
  const log = o.logger ?? pino({ level: 'warn' });
  const engines = await Promise.all(o.sites.map((s) => s.engineFactory()));
  const tokens = o.sites.map(() => randomBytes(24).toString('base64url'));
  const outDir = o.outDir ?? (await mkdtemp(join(tmpdir(), 'fedsam-sim-')));
  const n = o.sites.length;
  const minFit = o.minFitClients ?? n;
  const cfg: ServerConfigInput = {
    listen: '127.0.0.1:0',
    rounds: o.rounds,
    min_available_clients: n,
    min_fit_clients: minFit,
    fraction_fit: o.fractionFit ?? 1,
    min_evaluate_clients: 1,
    fraction_evaluate: 1,
    evaluate_every: 1,
    evaluate_initial: o.evaluateInitial ?? true,
    round_timeout_s: o.roundTimeoutS ?? 3600,
    // every site is here: if all fail a round three times they will fail it again; stop and say why
    max_round_attempts: 3,
    evaluate_timeout_s: o.roundTimeoutS ?? 3600,
    // Clients share this event loop with the server: a long synchronous training step must not look like death.
    heartbeat_timeout_s: 3600,
    heartbeat_interval_s: 5,
    long_poll_s: 5,
    fit: o.fit ?? {},
    strategy: o.strategy ?? { name: 'scaffold' },
    base_model: o.initialDecoder ? null : (o.baseModel ?? null),
    base_model_hash: o.initialDecoder ? (o.baseModelHash ?? engines[0]!.baseModelHash) : (o.baseModelHash ?? null),
    out_dir: outDir,
    sites: o.sites.map((s, i) => ({ name: s.name, token_sha256: hashToken(tokens[i]!) })),
    // Every site runs here, on the user's own data: their counts are trusted (FedAvg as in Flower).
    weighting: { policy: 'reported' },
    metrics: null,
    shutdown_grace_s: 10,
    ...o.server,
  };
  if (!o.initialDecoder && !o.baseModel) throw new Error('runSimulation: give baseModel (a SAM folder) or initialDecoder');
  const server = await runServer(cfg, { logger: log, initialDecoder: o.initialDecoder, samConfig: o.samConfig });
  o.onStarted?.(server);
  const history: SimulationRound[] = [];
  server.coordinator.on('evaluated', (r) => {
    const s = toSimulationRound(r);
    if (s) {
      history.push(s);
      o.onRound?.(s);
    }
  });
  const clients: ClientHandle[] = o.sites.map((s, i) =>
    runClient({
      server: `127.0.0.1:${server.port}`,
      token: tokens[i]!,
      site: s.name,
      engine: engines[i]!,
      logger: log,
      downloadDtype: o.downloadDtype,
      uploadDtype: o.uploadDtype,
      backoff: { initialMs: 100, maxMs: 2000 },
      onEvent: o.onClientEvent ? (e) => o.onClientEvent!(s.name, e) : undefined,
    }),
  );
  try {
    const res = await server.done;
    await Promise.all(clients.map((c) => c.done));
    return { history, serverHistory: res.history, finalWeights: server.coordinator.globalWeights, outDir };
  } catch (e) {
    await Promise.allSettled(clients.map((c) => c.stop('simulation failed')));
    await server.stop('simulation failed').catch(() => undefined);
    throw e;
  }
}
