// fedsam client: a site daemon. Every flag can also come from the environment (FEDSAM_*), for containers.
import { Option, type Command } from 'commander';
import { runSiteDaemon } from '@fedsam/client/daemon/siteDaemon';
import { parseFraction, parseNonNegInt } from '../args.ts';
import { MODEL_HELP } from '../options.ts';

export function registerClientCommand(program: Command): Command {
  return program.command('client')
    .description('run a site daemon: join the aggregation server, fine-tune the decoder locally each round, upload the weights')
    .addOption(new Option('--server <host:port>', 'aggregation server').env('FEDSAM_SERVER').makeOptionMandatory())
    .addOption(new Option('--site <name>', 'this site\'s name (the server checks it against the token)').env('FEDSAM_SITE'))
    .addOption(new Option('--token <token>', 'this site\'s secret token').env('FEDSAM_TOKEN'))
    .addOption(new Option('--token-file <file>', 'file holding the token (docker secret)').env('FEDSAM_TOKEN_FILE'))
    .addOption(new Option('--data <path>', 'the site\'s dataset (images/ + masks/, manifest, or NIfTI folder)').env('FEDSAM_DATA').makeOptionMandatory())
    .addOption(new Option('--model <dir>', MODEL_HELP).env('FEDSAM_MODEL'))
    .addOption(new Option('--cache-dir <dir>', 'embedding cache').env('FEDSAM_CACHE'))
    .addOption(new Option('--val-split <fraction>', 'validation fraction of groups (for evaluation rounds)').argParser(parseFraction('--val-split')).default(0.2))
    .addOption(new Option('--seed <n>', 'split seed').argParser(parseNonNegInt('--seed')).default(0))
    .addOption(new Option('--tls', 'TLS with the system CAs').env('FEDSAM_TLS'))
    .addOption(new Option('--tls-ca <pem>', 'CA certificate of the server (enables TLS)').env('FEDSAM_TLS_CA'))
    .addOption(new Option('--tls-cert <pem>', 'client certificate (mutual TLS)').env('FEDSAM_TLS_CLIENT_CERT'))
    .addOption(new Option('--tls-key <pem>', 'client key (mutual TLS)').env('FEDSAM_TLS_CLIENT_KEY'))
    .addOption(new Option('--upload-dtype <dtype>', 'wire dtype of uploads (F16 halves the bytes but rounds away part of small updates: see the README)').choices(['F32', 'F16']).env('FEDSAM_UPLOAD_DTYPE'))
    .addOption(new Option('--download-dtype <dtype>', 'wire dtype of downloads').choices(['F32', 'F16']).env('FEDSAM_DOWNLOAD_DTYPE'))
    .addOption(new Option('--dashboard <host:port>', 'serve this site\'s own page here: its state, its Dice and overlays of its validation images (they stay on the site)').env('FEDSAM_DASHBOARD'))
    .addOption(new Option('--dashboard-tls-cert <pem>', 'dashboard TLS certificate (needed off loopback)').env('FEDSAM_DASHBOARD_TLS_CERT'))
    .addOption(new Option('--dashboard-tls-key <pem>', 'dashboard TLS key').env('FEDSAM_DASHBOARD_TLS_KEY'))
    .addOption(new Option('--dashboard-token-file <file>', 'token the dashboard asks for (default off loopback: a new one, logged with the address)').env('FEDSAM_DASHBOARD_TOKEN_FILE'))
    .addOption(new Option('--quiet', 'no progress bars'))
    .action(async (o) => {
      await runSiteDaemon(o);
    });
}
