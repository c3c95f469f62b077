// fedsam server: the aggregation daemon. Every flag can also come from the environment (FEDSAM_*), for containers.
import { SAM_FINETUNE_LR, TINY_MODEL_LR } from '@fedsam/shared/train/lr';
import { Option, type Command } from 'commander';
import { loadServerConfig, ServerConfigError } from '@fedsam/server/config';
import { runServer } from '@fedsam/server/server';
import { STRATEGY_NAMES } from '@fedsam/server/strategy/config';
import { parseBoxJitterArg, parseCounts, parseInteger, parseNumber, parseSiteSpec, type SiteSpec } from '../args.ts';
import { DITTO_LAMBDA_HELP, FINAL_AVERAGE_ROUNDS_HELP, noBackend } from '../options.ts';
import { BOX_JITTER_HELP, type BoxJitter } from '@fedsam/shared/train/boxJitter';

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
  finalAverageRounds?: number;
  roundTimeout?: number;
  heartbeatTimeout?: number;
  strategy?: string;
  proximalMu?: number;
  eta?: number;
  beta1?: number;
  beta2?: number;
  tau?: number;
  trimBeta?: number;
  serverLr?: number;
  serverMomentum?: number;
  epochs?: number;
  points?: number[];
  lr?: number;
  optimizerState?: 'keep' | 'fresh';
  warmupSteps?: number;
  boxJitter?: BoxJitter;
  lrDecay?: number;
  dittoLambda?: number;
  batchSize?: number;
  seed?: number;
  baseModel?: string;
  baseModelHash?: string;
  initialDecoder?: string;
  outDir?: string;
  resume?: boolean;
  exportMerged?: string;
  site?: SiteSpec[];
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  tlsCrl?: string;
  metricsPort?: number;
  metricsHost?: string;
  metrics?: boolean;
  dashboard?: string;
  dashboardTlsCert?: string;
  dashboardTlsKey?: string;
  dashboardTokenFile?: string;
}

/** Flags -> config overrides (snake_case, same shape as the file). */
export function flagsToConfig(f: ServerFlags): Record<string, unknown> {
  const strategyParams: Record<string, unknown> = {
    proximal_mu: f.proximalMu, eta: f.eta, beta_1: f.beta1, beta_2: f.beta2, tau: f.tau, beta: f.trimBeta,
    server_learning_rate: f.serverLr, server_momentum: f.serverMomentum,
  };
  const hasStrategyParams = Object.values(strategyParams).some((v) => v !== undefined);
  const fit = { epochs: f.epochs, lr: f.lr, batch_size: f.batchSize, seed: f.seed, points_positive: f.points?.[0], points_negative: f.points?.[1], optimizer_state: f.optimizerState, warmup_steps: f.warmupSteps, box_jitter: f.boxJitter, lr_decay: f.lrDecay, ditto_lambda: f.dittoLambda };
  const tls = f.tlsCert || f.tlsKey || f.tlsClientCa || f.tlsCrl ? { cert: f.tlsCert, key: f.tlsKey, client_ca: f.tlsClientCa, crl: f.tlsCrl } : undefined;
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
    final_average_rounds: f.finalAverageRounds,
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
    dashboard: f.dashboard ? { listen: f.dashboard, tls_cert: f.dashboardTlsCert, tls_key: f.dashboardTlsKey, token_file: f.dashboardTokenFile } : undefined,
  };
}

/**
 * `fedsam server`: every flag can also come from the environment (FEDSAM_*), for containers. Precedence: flag >
 * environment > config file > defaults. The log level is the program's global --log-level / FEDSAM_LOG_LEVEL.
 */
export function registerServerCommand(program: Command): Command {
  // The server runs no model (no compute backend needed).
  return noBackend(program.command('server'))
    .description('run the aggregation server: rounds of federated fine-tuning of the SAM mask decoder over gRPC')
    .addOption(new Option('-c, --config <file>', 'YAML/JSON config file (flags and FEDSAM_* variables override it)').env('FEDSAM_SERVER_CONFIG'))
    .addOption(new Option('--listen <host:port>', 'gRPC address (default 0.0.0.0:8080)').env('FEDSAM_LISTEN'))
    .addOption(new Option('--rounds <n>', 'number of rounds').env('FEDSAM_ROUNDS').argParser(parseInteger('--rounds')))
    .addOption(new Option('--min-available <n>', 'sites that must be connected before a round starts').env('FEDSAM_MIN_AVAILABLE').argParser(parseInteger('--min-available')))
    .addOption(new Option('--min-fit <n>', 'minimum updates to aggregate a round (else the round is retried)').env('FEDSAM_MIN_FIT').argParser(parseInteger('--min-fit')))
    .addOption(new Option('--fraction-fit <f>', 'fraction of connected sites sampled per round').env('FEDSAM_FRACTION_FIT').argParser(parseNumber('--fraction-fit')))
    .addOption(new Option('--min-evaluate <n>', 'minimum sites per evaluation').env('FEDSAM_MIN_EVALUATE').argParser(parseInteger('--min-evaluate')))
    .addOption(new Option('--fraction-evaluate <f>', 'fraction of sites asked to evaluate (0 = no evaluation)').env('FEDSAM_FRACTION_EVALUATE').argParser(parseNumber('--fraction-evaluate')))
    .addOption(new Option('--evaluate-every <n>', 'evaluate the global model every n rounds (0 = never)').env('FEDSAM_EVALUATE_EVERY').argParser(parseInteger('--evaluate-every')))
    .addOption(new Option('--evaluate-initial', 'also evaluate the initial model (round 0)').env('FEDSAM_EVALUATE_INITIAL'))
    .addOption(new Option('--final-average-rounds <n>', FINAL_AVERAGE_ROUNDS_HELP).env('FEDSAM_FINAL_AVERAGE_ROUNDS').argParser(parseInteger('--final-average-rounds')))
    .addOption(new Option('--round-timeout <s>', 'seconds to wait for updates in a round').env('FEDSAM_ROUND_TIMEOUT').argParser(parseNumber('--round-timeout')))
    .addOption(new Option('--heartbeat-timeout <s>', 'seconds of silence after which a site is dropped').env('FEDSAM_HEARTBEAT_TIMEOUT').argParser(parseNumber('--heartbeat-timeout')))
    .addOption(new Option('--strategy <name>', 'aggregation strategy').env('FEDSAM_STRATEGY').choices(STRATEGY_NAMES))
    .addOption(new Option('--proximal-mu <mu>', 'FedProx proximal term weight').env('FEDSAM_PROXIMAL_MU').argParser(parseNumber('--proximal-mu')))
    .addOption(new Option('--eta <eta>', 'FedAdam/FedYogi server learning rate (FedAdam default: the sites\' --lr; FedYogi 0.01)').env('FEDSAM_ETA').argParser(parseNumber('--eta')))
    .addOption(new Option('--beta1 <b>', 'FedAdam/FedYogi beta_1').env('FEDSAM_BETA1').argParser(parseNumber('--beta1')))
    .addOption(new Option('--beta2 <b>', 'FedAdam/FedYogi beta_2').env('FEDSAM_BETA2').argParser(parseNumber('--beta2')))
    .addOption(new Option('--tau <tau>', 'FedAdam/FedYogi adaptivity tau').env('FEDSAM_TAU').argParser(parseNumber('--tau')))
    .addOption(new Option('--trim-beta <b>', 'trimmed mean: fraction cut at each end').env('FEDSAM_TRIM_BETA').argParser(parseNumber('--trim-beta')))
    .addOption(new Option('--server-lr <lr>', 'FedAvgM server learning rate (default 1)').env('FEDSAM_SERVER_LR').argParser(parseNumber('--server-lr')))
    .addOption(new Option('--server-momentum <m>', 'FedAvgM server momentum (default 0: plain FedAvg)').env('FEDSAM_SERVER_MOMENTUM').argParser(parseNumber('--server-momentum')))
    .addOption(new Option('--epochs <n>', 'local epochs per round').env('FEDSAM_EPOCHS').argParser(parseInteger('--epochs')))
    .addOption(new Option('--lr <lr>', `local Adam learning rate (default: the base model's, ${SAM_FINETUNE_LR} for SAM weights, ${TINY_MODEL_LR} for the built-in fedsam-tiny)`).env('FEDSAM_LR').argParser(parseNumber('--lr')))
    .addOption(new Option('--optimizer-state <mode>', 'keep: each site continues its Adam state across rounds (saved in its state folder); fresh: a new Adam every round (default keep)').env('FEDSAM_OPTIMIZER_STATE').choices(['keep', 'fresh']))
    .addOption(new Option('--lr-decay <f>', 'round r trains with lr x f^(r-1) (default 1: constant)').env('FEDSAM_LR_DECAY').argParser(parseNumber('--lr-decay')))
    .addOption(new Option('--box-jitter <sam|px>', BOX_JITTER_HELP).env('FEDSAM_BOX_JITTER').argParser(parseBoxJitterArg('--box-jitter')))
    .addOption(new Option('--warmup-steps <n>', 'linear lr warm-up over a site optimizer\'s first n steps (default 0: none)').env('FEDSAM_WARMUP_STEPS').argParser(parseInteger('--warmup-steps')))
    .addOption(new Option('--ditto-lambda <λ>', DITTO_LAMBDA_HELP).env('FEDSAM_DITTO_LAMBDA').argParser(parseNumber('--ditto-lambda')))
    .addOption(new Option('--batch-size <n>', 'local batch size').env('FEDSAM_BATCH_SIZE').argParser(parseInteger('--batch-size')))
    .addOption(new Option('--seed <n>', 'seed of local training').env('FEDSAM_SEED').argParser(parseInteger('--seed')))
    .addOption(new Option('--points <pos,neg>', 'point prompts per object in local training, inside / outside the object (default 0,0: boxes only)').env('FEDSAM_POINTS').argParser(parseCounts('--points', 2)))
    .addOption(new Option('--base-model <dir>', 'HF SAM folder the sites fine-tune (initial decoder + frozen-encoder hash)').env('FEDSAM_BASE_MODEL'))
    .addOption(new Option('--base-model-hash <hex>', 'frozen-encoder hash the sites must have (with --initial-decoder)').env('FEDSAM_BASE_MODEL_HASH'))
    .addOption(new Option('--initial-decoder <path>', 'initial decoder (.safetensors or decoder folder), with --base-model-hash').env('FEDSAM_INITIAL_DECODER'))
    .addOption(new Option('--out-dir <dir>', 'where round folders, state.json and history.json go (default runs/server)').env('FEDSAM_OUT_DIR'))
    .addOption(new Option('--resume', 'continue after the last completed round in --out-dir').env('FEDSAM_RESUME'))
    .addOption(new Option('--export-merged <dir>', 'at the end, write frozen encoders + global decoder as a full SAM folder').env('FEDSAM_EXPORT_MERGED'))
    .addOption(new Option('--site <name:sha256>', 'a site and the sha256 of its token (repeatable; FEDSAM_SITES: comma-separated)').env('FEDSAM_SITES').argParser(parseSiteSpec))
    .addOption(new Option('--tls-cert <pem>', 'server certificate (enables TLS)').env('FEDSAM_TLS_CERT'))
    .addOption(new Option('--tls-key <pem>', 'server private key').env('FEDSAM_TLS_KEY'))
    .addOption(new Option('--tls-client-ca <pem>', 'require client certificates signed by this CA (a site is then the name in its certificate)').env('FEDSAM_TLS_CLIENT_CA'))
    .addOption(new Option('--tls-crl <pem>', 'revoked client certificates (fedsam provision --revoke); read again on SIGHUP').env('FEDSAM_TLS_CRL'))
    .addOption(new Option('--metrics-port <port>', 'Prometheus /metrics port (default 9464)').env('FEDSAM_METRICS_PORT').argParser(parseInteger('--metrics-port')))
    .addOption(new Option('--metrics-host <host>', 'Prometheus /metrics host (default 127.0.0.1)').env('FEDSAM_METRICS_HOST'))
    .addOption(new Option('--no-metrics', 'do not serve /metrics'))
    .addOption(new Option('--dashboard <host:port>', 'serve the live federation page here (e.g. 127.0.0.1:8090; off loopback it needs TLS and a token)').env('FEDSAM_DASHBOARD'))
    .addOption(new Option('--dashboard-tls-cert <pem>', 'dashboard TLS certificate (default: the server\'s --tls-cert)').env('FEDSAM_DASHBOARD_TLS_CERT'))
    .addOption(new Option('--dashboard-tls-key <pem>', 'dashboard TLS key (default: the server\'s --tls-key)').env('FEDSAM_DASHBOARD_TLS_KEY'))
    .addOption(new Option('--dashboard-token-file <file>', 'token the dashboard asks for (default off loopback: a new one, logged with the address)').env('FEDSAM_DASHBOARD_TOKEN_FILE'))
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
      // SIGHUP: read the TLS files again (the CRL after `fedsam provision --revoke`)
      process.on('SIGHUP', () => void h.reload().catch((e) => process.stderr.write(`fedsam server: reload failed, keeping the previous TLS files: ${(e as Error).message}\n`)));
      const res = await h.done;
      process.stdout.write(JSON.stringify({ event: 'summary', round: res.round, stopped: res.stopped, out_dir: res.outDir, global_version: res.globalVersion }) + '\n');
    });
}
