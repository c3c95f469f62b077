// fedsam client: a site daemon. Settings come from a site config file (site.yaml, e.g. from `fedsam provision`),
// the environment (FEDSAM_*, for containers) and flags; precedence: flag > environment > file > the schema's
// defaults (client/src/daemon/siteConfig.ts).
import { Option, type Command } from 'commander';
import { loadSiteConfig } from '@fedsam/client/daemon/siteConfig';
import { runSiteDaemon } from '@fedsam/client/daemon/siteDaemon';
import { parseFraction, parseNonNegInt, parsePositiveFloat } from '../args.ts';
import { MODEL_HELP } from '../options.ts';

interface ClientFlags {
  config?: string;
  server?: string;
  site?: string;
  token?: string;
  tokenFile?: string;
  data?: string;
  model?: string;
  cacheDir?: string;
  stateDir?: string;
  valSplit?: number;
  seed?: number;
  fitTimeout?: number;
  tls?: boolean;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  uploadDtype?: 'F32' | 'F16';
  downloadDtype?: 'F32' | 'F16';
  dashboard?: string;
  dashboardTlsCert?: string;
  dashboardTlsKey?: string;
  dashboardTokenFile?: string;
  quiet?: boolean;
}

/** Flags -> site config overrides (snake_case, same shape as site.yaml; undefined = not given). */
export function flagsToSiteConfig(f: ClientFlags): Record<string, unknown> {
  const dashboard = f.dashboard ? { listen: f.dashboard, tls_cert: f.dashboardTlsCert, tls_key: f.dashboardTlsKey, token_file: f.dashboardTokenFile } : undefined;
  const tls = f.tlsCa || f.tlsCert || f.tlsKey ? { ca: f.tlsCa, cert: f.tlsCert, key: f.tlsKey } : f.tls ? {} : undefined;
  return {
    server: f.server, site: f.site, token: f.token, token_file: f.tokenFile, tls, data: f.data, model: f.model, cache_dir: f.cacheDir, state_dir: f.stateDir,
    val_split: f.valSplit, seed: f.seed, fit_timeout_s: f.fitTimeout, upload_dtype: f.uploadDtype, download_dtype: f.downloadDtype, dashboard,
  };
}

export function registerClientCommand(program: Command): Command {
  return program.command('client')
    .description('run a site daemon: join the aggregation server, fine-tune the decoder locally each round, upload the weights')
    .addOption(new Option('-c, --config <site.yaml>', 'site config file (e.g. from fedsam provision); flags and FEDSAM_* variables override it').env('FEDSAM_SITE_CONFIG'))
    .addOption(new Option('--server <host:port>', 'aggregation server').env('FEDSAM_SERVER'))
    .addOption(new Option('--site <name>', 'this site\'s name (the server checks it against the certificate or token)').env('FEDSAM_SITE'))
    .addOption(new Option('--token <token>', 'this site\'s secret token (not needed with a site certificate)').env('FEDSAM_TOKEN'))
    .addOption(new Option('--token-file <file>', 'file holding the token (docker secret)').env('FEDSAM_TOKEN_FILE'))
    .addOption(new Option('--data <path>', 'the site\'s dataset (images/ + masks/, manifest, or NIfTI folder)').env('FEDSAM_DATA'))
    .addOption(new Option('--model <dir>', MODEL_HELP).env('FEDSAM_MODEL'))
    .addOption(new Option('--cache-dir <dir>', 'embedding cache').env('FEDSAM_CACHE'))
    .addOption(new Option('--state-dir <dir>', 'the site\'s own state: its optimizer kept across rounds, resumed after a restart (default runs/sites/<site>)').env('FEDSAM_STATE_DIR'))
    .addOption(new Option('--val-split <fraction>', 'validation fraction of groups (for evaluation rounds; default 0.2)').argParser(parseFraction('--val-split')))
    .addOption(new Option('--seed <n>', 'split seed (default 0)').argParser(parseNonNegInt('--seed')))
    .addOption(new Option('--fit-timeout <s>', 'abandon a round\'s local training after this many seconds (the round goes on without this site)').argParser(parsePositiveFloat('--fit-timeout')).env('FEDSAM_FIT_TIMEOUT'))
    .addOption(new Option('--tls', 'TLS with the system CAs').env('FEDSAM_TLS'))
    .addOption(new Option('--tls-ca <pem>', 'CA certificate of the server (enables TLS)').env('FEDSAM_TLS_CA'))
    .addOption(new Option('--tls-cert <pem>', 'site certificate (mutual TLS: it names the site)').env('FEDSAM_TLS_CLIENT_CERT'))
    .addOption(new Option('--tls-key <pem>', 'site certificate key (mutual TLS)').env('FEDSAM_TLS_CLIENT_KEY'))
    .addOption(new Option('--upload-dtype <dtype>', 'wire dtype of uploads (F16 halves the bytes but rounds away part of small updates: see the README)').choices(['F32', 'F16']).env('FEDSAM_UPLOAD_DTYPE'))
    .addOption(new Option('--download-dtype <dtype>', 'wire dtype of downloads').choices(['F32', 'F16']).env('FEDSAM_DOWNLOAD_DTYPE'))
    .addOption(new Option('--dashboard <host:port>', 'serve this site\'s own page here: its state, its Dice and overlays of its validation images (they stay on the site)').env('FEDSAM_DASHBOARD'))
    .addOption(new Option('--dashboard-tls-cert <pem>', 'dashboard TLS certificate (needed off loopback)').env('FEDSAM_DASHBOARD_TLS_CERT'))
    .addOption(new Option('--dashboard-tls-key <pem>', 'dashboard TLS key').env('FEDSAM_DASHBOARD_TLS_KEY'))
    .addOption(new Option('--dashboard-token-file <file>', 'token the dashboard asks for (default off loopback: a new one, logged with the address)').env('FEDSAM_DASHBOARD_TOKEN_FILE'))
    .addOption(new Option('--quiet', 'no progress bars'))
    .action(async (flags: ClientFlags) => {
      const config = await loadSiteConfig(flags.config, flagsToSiteConfig(flags));
      await runSiteDaemon(config, { quiet: flags.quiet });
    });
}
