// `fedsam server`: commander subcommand definition (the CLI entry wires it with registerServerCommand(program)).
import { Command, InvalidArgumentError, Option } from 'commander';
import { parseCounts } from '@fedsam/client/commands/args';
import { loadServerConfig, ServerConfigError } from './config.ts';
import { runServer } from './server.ts';
import { STRATEGY_NAMES } from './strategy/index.ts';

const int = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`${name} must be an integer`);
  return n;
};
const num = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number`);
  return n;
};
/** NAME:SHA256 (or a comma-separated list of them, as in FEDSAM_SITES). */
const siteSpec = (v: string, prev: Array<{ name: string; token_sha256: string }> = []) => {
  const out = [...prev];
  for (const part of v.split(',').map((p) => p.trim()).filter(Boolean)) {
    const i = part.lastIndexOf(':');
    if (i <= 0) throw new InvalidArgumentError(`--site expects NAME:SHA256_OF_TOKEN, got "${part}"`);
    out.push({ name: part.slice(0, i), token_sha256: part.slice(i + 1) });
  }
  return out;
};

interface ServerFlags {
  config?: string;
  listen?: string;
  rounds?: number;
  minAvailable?: number;
  minFit?: number;
  fractionFit?: number;
  minEvaluate?: number;
  fractionEvaluate?: number;
  evaluateEvery?: number;
  evaluateInitial?: boolean;
  roundTimeout?: number;
  heartbeatTimeout?: number;
  strategy?: string;
  proximalMu?: number;
  eta?: number;
  beta1?: number;
  beta2?: number;
  tau?: number;
  trimBeta?: number;
  epochs?: number;
  points?: number[];
  lr?: number;
  batchSize?: number;
  seed?: number;
  baseModel?: string;
  baseModelHash?: string;
  initialDecoder?: string;
  outDir?: string;
  resume?: boolean;
  exportMerged?: string;
  site?: Array<{ name: string; token_sha256: string }>;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  metricsPort?: number;
  metricsHost?: string;
  metrics?: boolean;
}

/** Flags -> config overrides (snake_case, same shape as the file). */
export function flagsToConfig(f: ServerFlags): Record<string, unknown> {
  const strategyParams: Record<string, unknown> = {
    proximal_mu: f.proximalMu, eta: f.eta, beta_1: f.beta1, beta_2: f.beta2, tau: f.tau, beta: f.trimBeta,
  };
  const hasStrategyParams = Object.values(strategyParams).some((v) => v !== undefined);
  const fit = { epochs: f.epochs, lr: f.lr, batch_size: f.batchSize, seed: f.seed, points_positive: f.points?.[0], points_negative: f.points?.[1] };
  const tls = f.tlsCert || f.tlsKey ? { cert: f.tlsCert, key: f.tlsKey, client_ca: f.tlsClientCa } : undefined;
  let metrics: unknown;
  if (f.metrics === false) metrics = null;
  else if (f.metricsPort !== undefined || f.metricsHost !== undefined) metrics = { port: f.metricsPort, host: f.metricsHost };
  return {
    listen: f.listen,
    rounds: f.rounds,
    min_available_clients: f.minAvailable,
    min_fit_clients: f.minFit,
    fraction_fit: f.fractionFit,
    min_evaluate_clients: f.minEvaluate,
    fraction_evaluate: f.fractionEvaluate,
    evaluate_every: f.evaluateEvery,
    evaluate_initial: f.evaluateInitial,
    round_timeout_s: f.roundTimeout,
    heartbeat_timeout_s: f.heartbeatTimeout,
    strategy: f.strategy || hasStrategyParams ? { name: f.strategy, ...strategyParams } : undefined,
    fit: Object.values(fit).some((v) => v !== undefined) ? fit : undefined,
    base_model: f.baseModel,
    base_model_hash: f.baseModelHash,
    initial_decoder: f.initialDecoder,
    out_dir: f.outDir,
    resume: f.resume,
    export_merged: f.exportMerged,
    sites: f.site,
    tls,
    metrics,
  };
}

const opt = (flags: string, description: string, env: string, parse?: (v: string, prev?: never) => unknown) => {
  const o = new Option(flags, description).env(env);
  return parse ? o.argParser(parse as (v: string, prev: unknown) => unknown) : o;
};

/**
 * `fedsam server`: every flag can also come from the environment (FEDSAM_*), for containers. Precedence: flag >
 * environment > config file > defaults. The log level is the program's global --log-level / FEDSAM_LOG_LEVEL.
 */
export function registerServerCommand(program: Command): Command {
  const cmd = program
    .command('server')
    .description('run the aggregation server: rounds of federated fine-tuning of the SAM mask decoder over gRPC')
    .addOption(opt('-c, --config <file>', 'YAML/JSON config file (flags and FEDSAM_* variables override it)', 'FEDSAM_SERVER_CONFIG'))
    .addOption(opt('--listen <host:port>', 'gRPC address (default 0.0.0.0:8080)', 'FEDSAM_LISTEN'))
    .addOption(opt('--rounds <n>', 'number of rounds', 'FEDSAM_ROUNDS', int('--rounds')))
    .addOption(opt('--min-available <n>', 'sites that must be connected before a round starts', 'FEDSAM_MIN_AVAILABLE', int('--min-available')))
    .addOption(opt('--min-fit <n>', 'minimum updates to aggregate a round (else the round is retried)', 'FEDSAM_MIN_FIT', int('--min-fit')))
    .addOption(opt('--fraction-fit <f>', 'fraction of connected sites sampled per round', 'FEDSAM_FRACTION_FIT', num('--fraction-fit')))
    .addOption(opt('--min-evaluate <n>', 'minimum sites per evaluation', 'FEDSAM_MIN_EVALUATE', int('--min-evaluate')))
    .addOption(opt('--fraction-evaluate <f>', 'fraction of sites asked to evaluate (0 = no evaluation)', 'FEDSAM_FRACTION_EVALUATE', num('--fraction-evaluate')))
    .addOption(opt('--evaluate-every <n>', 'evaluate the global model every n rounds (0 = never)', 'FEDSAM_EVALUATE_EVERY', int('--evaluate-every')))
    .addOption(opt('--evaluate-initial', 'also evaluate the initial model (round 0)', 'FEDSAM_EVALUATE_INITIAL'))
    .addOption(opt('--round-timeout <s>', 'seconds to wait for updates in a round', 'FEDSAM_ROUND_TIMEOUT', num('--round-timeout')))
    .addOption(opt('--heartbeat-timeout <s>', 'seconds of silence after which a site is dropped', 'FEDSAM_HEARTBEAT_TIMEOUT', num('--heartbeat-timeout')))
    .addOption(opt('--strategy <name>', 'aggregation strategy', 'FEDSAM_STRATEGY').choices(STRATEGY_NAMES))
    .addOption(opt('--proximal-mu <mu>', 'FedProx proximal term weight', 'FEDSAM_PROXIMAL_MU', num('--proximal-mu')))
    .addOption(opt('--eta <eta>', 'FedAdam/FedYogi server learning rate', 'FEDSAM_ETA', num('--eta')))
    .addOption(opt('--beta1 <b>', 'FedAdam/FedYogi beta_1', 'FEDSAM_BETA1', num('--beta1')))
    .addOption(opt('--beta2 <b>', 'FedAdam/FedYogi beta_2', 'FEDSAM_BETA2', num('--beta2')))
    .addOption(opt('--tau <tau>', 'FedAdam/FedYogi adaptivity tau', 'FEDSAM_TAU', num('--tau')))
    .addOption(opt('--trim-beta <b>', 'trimmed mean: fraction cut at each end', 'FEDSAM_TRIM_BETA', num('--trim-beta')))
    .addOption(opt('--epochs <n>', 'local epochs per round', 'FEDSAM_EPOCHS', int('--epochs')))
    .addOption(opt('--lr <lr>', 'local learning rate', 'FEDSAM_LR', num('--lr')))
    .addOption(opt('--batch-size <n>', 'local batch size', 'FEDSAM_BATCH_SIZE', int('--batch-size')))
    .addOption(opt('--seed <n>', 'seed of local training', 'FEDSAM_SEED', int('--seed')))
    .addOption(opt('--points <pos,neg>', 'point prompts per object in local training, inside / outside the object (default 0,0: boxes only)', 'FEDSAM_POINTS', parseCounts('--points', 2)))
    .addOption(opt('--base-model <dir>', 'HF SAM folder the sites fine-tune (initial decoder + frozen-encoder hash)', 'FEDSAM_BASE_MODEL'))
    .addOption(opt('--base-model-hash <hex>', 'frozen-encoder hash the sites must have (with --initial-decoder)', 'FEDSAM_BASE_MODEL_HASH'))
    .addOption(opt('--initial-decoder <path>', 'initial decoder (.safetensors or decoder folder), with --base-model-hash', 'FEDSAM_INITIAL_DECODER'))
    .addOption(opt('--out-dir <dir>', 'where round folders, state.json and history.json go (default runs/server)', 'FEDSAM_OUT_DIR'))
    .addOption(opt('--resume', 'continue after the last completed round in --out-dir', 'FEDSAM_RESUME'))
    .addOption(opt('--export-merged <dir>', 'at the end, write frozen encoders + global decoder as a full SAM folder', 'FEDSAM_EXPORT_MERGED'))
    .addOption(opt('--site <name:sha256>', 'a site and the sha256 of its token (repeatable; FEDSAM_SITES: comma-separated)', 'FEDSAM_SITES', siteSpec))
    .addOption(opt('--tls-cert <pem>', 'server certificate (enables TLS)', 'FEDSAM_TLS_CERT'))
    .addOption(opt('--tls-key <pem>', 'server private key', 'FEDSAM_TLS_KEY'))
    .addOption(opt('--tls-client-ca <pem>', 'require client certificates signed by this CA', 'FEDSAM_TLS_CLIENT_CA'))
    .addOption(opt('--metrics-port <port>', 'Prometheus /metrics port (default 9464)', 'FEDSAM_METRICS_PORT', int('--metrics-port')))
    .addOption(opt('--metrics-host <host>', 'Prometheus /metrics host (default 127.0.0.1)', 'FEDSAM_METRICS_HOST'))
    .option('--no-metrics', 'do not serve /metrics')
    .action(async (flags: ServerFlags) => {
      let handle;
      try {
        const cfg = await loadServerConfig(flags.config, flagsToConfig(flags));
        handle = await runServer(cfg);
      } catch (e) {
        if (e instanceof ServerConfigError) {
          process.stderr.write(`fedsam server: ${e.message}\n`);
          process.exitCode = 2;
          return;
        }
        throw e;
      }
      const h = handle;
      const onSignal = (sig: string) => void h.stop(`received ${sig}`);
      process.once('SIGTERM', () => onSignal('SIGTERM'));
      process.once('SIGINT', () => onSignal('SIGINT'));
      const res = await h.done;
      process.stdout.write(JSON.stringify({ event: 'summary', round: res.round, stopped: res.stopped, out_dir: res.outDir, global_version: res.globalVersion }) + '\n');
    });
  // The server runs no model (no compute backend needed).
  (cmd as Command & { needsBackend?: boolean }).needsBackend = false;
  return cmd;
}
