// fedsam command line. Thin: parses flags (commander), validates them, and calls domain code in the workspaces.
import { Command, Option, InvalidArgumentError } from 'commander';
import { initBackend } from '@fedsam/shared/backend';
import { logger, setLogLevel } from '@fedsam/shared/log';
import { registerCommands, registerFederationCommands } from './commands.ts';

export class UsageError extends Error {
  override name = 'UsageError';
}

const program = new Command();
program
  .name('fedsam')
  .description('Federated fine-tuning of Segment Anything (SAM) mask decoders: aggregation server, site clients, local training.')
  .addOption(new Option('--backend <name>', 'compute backend: gpu (tfjs-node-gpu), node (tfjs-node), wasm, cpu; default: first that loads').env('FEDSAM_BACKEND'))
  .addOption(new Option('--log-level <level>', 'log level for the JSON event log on stderr').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('info').env('FEDSAM_LOG_LEVEL'))
  .showHelpAfterError('(run with --help for usage)')
  .hook('preAction', async (_this, action) => {
    const opts = program.opts<{ backend?: string; logLevel: string }>();
    setLogLevel(opts.logLevel);
    if ((action as Command & { needsBackend?: boolean }).needsBackend === false) return;
    const choice = await initBackend(opts.backend);
    logger('backend').info({ backend: choice.name, reason: choice.reason }, 'compute backend selected');
  });

registerCommands(program);
registerFederationCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  // One line that says what to fix; never a stack trace through the wasm runtime for a user error.
  const err = e as Error;
  process.stderr.write(`fedsam: error: ${err.message}\n`);
  if (process.env.FEDSAM_DEBUG) process.stderr.write(`${err.stack}\n`);
  process.exitCode = err instanceof UsageError || err instanceof InvalidArgumentError ? 2 : 1;
}
