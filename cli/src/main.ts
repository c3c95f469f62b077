// The fedsam program (commander): global flags, one subcommand per file in commands/, one-line errors.
// bin/fedsam.mjs runs it.
import { Command, Option, InvalidArgumentError } from 'commander';
import { initBackend } from '@fedsam/shared/backend';
import { LOG_FORMATS, logger, setLogFormat, setLogLevel, type LogFormat } from '@fedsam/shared/log';
import { chooseEngine, setEngine } from '@fedsam/shared/inference';
import { needsBackend } from './options.ts';
import { registerVerifyReferenceCommand } from './commands/verify-reference.ts';
import { registerPredictCommand } from './commands/predict.ts';
import { registerTrainCommand } from './commands/train.ts';
import { registerEvaluateCommand } from './commands/evaluate.ts';
import { registerSynthCommand } from './commands/synth.ts';
import { registerSaveDefaultModelCommand } from './commands/save-default-model.ts';
import { registerServerCommand } from './commands/server.ts';
import { registerClientCommand } from './commands/client.ts';
import { registerProvisionCommand } from './commands/provision.ts';
import { registerSimulateCommand } from './commands/simulate.ts';
import { registerPretrainCommand } from './commands/pretrain.ts';

function buildProgram(): Command {
  const program = new Command();
  program
    .name('fedsam')
    .description('Federated fine-tuning of Segment Anything (SAM) mask decoders: aggregation server, site clients, local training.')
    .addOption(new Option('--backend <name>', 'compute backend: gpu (tfjs-node-gpu), node (tfjs-node), wasm, cpu; default: first that loads').env('FEDSAM_BACKEND'))
    .addOption(new Option('--engine <name>', 'inference engine for embedding, predict, evaluate: onnx (ONNX Runtime) or tfjs; default: onnx where onnxruntime-node loads (training always runs on tfjs)').choices(['onnx', 'tfjs']).env('FEDSAM_ENGINE'))
    .addOption(new Option('--log-level <level>', 'log level of the event log on stderr').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('info').env('FEDSAM_LOG_LEVEL'))
    .addOption(new Option('--log-format <format>', 'event log on stderr: pretty (lines for people), json (one JSON object per line, for machines), auto (pretty on a terminal)').choices([...LOG_FORMATS]).default('auto').env('FEDSAM_LOG_FORMAT'))
    .showHelpAfterError('(run with --help for usage)')
    .hook('preAction', async (_this, action) => {
      const opts = program.opts<{ backend?: string; engine?: string; logLevel: string; logFormat: LogFormat }>();
      setLogFormat(opts.logFormat);
      setLogLevel(opts.logLevel);
      if (!needsBackend(action)) return;
      const choice = await initBackend(opts.backend);
      logger('backend').info({ backend: choice.name, reason: choice.reason }, 'compute backend selected');
      const engine = chooseEngine(opts.engine);
      setEngine(engine);
      process.env.FEDSAM_ENGINE = engine.name; // worker threads (simulated sites) inherit the choice
      logger('engine').info({ engine: engine.name, reason: engine.reason }, 'inference engine selected');
    });
  for (const register of [
    registerVerifyReferenceCommand, registerPredictCommand, registerTrainCommand, registerEvaluateCommand, registerSynthCommand,
    registerSaveDefaultModelCommand, registerServerCommand, registerClientCommand, registerProvisionCommand, registerSimulateCommand, registerPretrainCommand,
  ]) register(program);
  return program;
}

try {
  await buildProgram().parseAsync(process.argv);
} catch (e) {
  // One line that says what to fix; never a stack trace through the wasm runtime for a user error.
  const err = e as Error;
  process.stderr.write(`fedsam: error: ${err.message}\n`);
  if (process.env.FEDSAM_DEBUG) process.stderr.write(`${err.stack}\n`);
  process.exitCode = err instanceof InvalidArgumentError ? 2 : 1;
}
