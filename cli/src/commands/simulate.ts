// fedsam simulate: the whole federation on this machine (aggregator + N site clients over loopback gRPC).
import { SAM_FINETUNE_LR, TINY_MODEL_LR } from '@fedsam/shared/train/lr';
import { Option, InvalidArgumentError, type Command } from 'commander';
import { resolve } from 'node:path';
import { STRATEGY_NAMES } from '@fedsam/server/strategy/config';
import { FitSchema } from '@fedsam/server/config';
import { parseBoxCropArg, parseBoxJitterArg, parseCounts, parseFraction, parseNonNegFloat, parseNonNegInt, parsePositiveFloat, parsePositiveInt } from '../args.ts';
import { BOX_CROP_HELP } from '@fedsam/shared/boxCrop';
import { DITTO_LAMBDA_HELP, FINAL_AVERAGE_ROUNDS_HELP, MODEL_HELP, print, timestampedRun } from '../options.ts';
import { simulate } from '../simulate.ts';
import { BOX_JITTER_HELP } from '@fedsam/shared/train/boxJitter';

/** Defaults of `fedsam simulate` (the main job: under 5 minutes on 2 cores). */
export const SIMULATE_DEFAULTS = { rounds: 12, epochs: 1, imagesPerSite: 40 };

export function registerSimulateCommand(program: Command): Command {
  return program.command('simulate')
    .description('run the whole federation on this machine: aggregator + N site clients over loopback gRPC; per-round Dice table')
    .addOption(new Option('--sites <n>', 'number of sites').argParser(parsePositiveInt('--sites')).default(3))
    .addOption(new Option('--rounds <n>', 'federated rounds').argParser(parsePositiveInt('--rounds')).default(SIMULATE_DEFAULTS.rounds))
    .addOption(new Option('--data <dir>', 'one dataset per site (a folder of site-1/, site-2/, ..., or of symbolic links to site datasets), or one dataset to split across the sites by group; default: synthetic data'))
    .addOption(new Option('--non-iid', 'non-IID sites: synthetic sites differ in intensity, contrast, noise and object mix; a split dataset is cut by object size'))
    .addOption(new Option('--images-per-site <n>', 'synthetic images per site').argParser(parsePositiveInt('--images-per-site')).default(SIMULATE_DEFAULTS.imagesPerSite))
    .addOption(new Option('--model <dir>', MODEL_HELP))
    .addOption(new Option('--epochs <n>', 'local epochs per round').argParser(parsePositiveInt('--epochs')).default(SIMULATE_DEFAULTS.epochs))
    .addOption(new Option('--lr <lr>', `local Adam learning rate (default: the model's: ${SAM_FINETUNE_LR} for SAM weights, ${TINY_MODEL_LR} for the built-in model)`).argParser(parsePositiveFloat('--lr')))
    .addOption(new Option('--batch-size <n>', 'local batch size').argParser(parsePositiveInt('--batch-size')).default(4))
    .addOption(new Option('--strategy <name>', 'aggregation strategy').choices(STRATEGY_NAMES).default('scaffold'))
    .addOption(new Option('--proximal-mu <mu>', 'FedProx proximal weight').argParser(parsePositiveFloat('--proximal-mu')))
    .addOption(new Option('--points <pos,neg>', 'point prompts per object in local training, inside / outside the object (e.g. 1,1; default boxes only)').argParser(parseCounts('--points', 2)))
    .addOption(new Option('--val-split <fraction>', 'validation fraction per site').argParser(parseFraction('--val-split')).default(0.25))
    .addOption(new Option('--seed <n>', 'seed for data, split and training (training\'s own with --train-seed)').argParser(parseNonNegInt('--seed')).default(0))
    .addOption(new Option('--train-seed <n>', 'seed for training alone (batch order, box noise) on --seed\'s data and split; vary it to see how far a result moves with training noise (default: --seed)').argParser(parseNonNegInt('--train-seed')))
    .addOption(new Option('--out <dir>', 'output folder (data, server state, final model)').default(timestampedRun('simulate')))
    .addOption(new Option('--history <file>', 'write the per-round history as JSON'))
    .addOption(new Option('--cache-dir <dir>', 'embedding cache (default: <out>/cache)'))
    .addOption(new Option('--compare', 'also train local-only (each site alone) and centralized (pooled) with the same epoch budget'))
    .addOption(new Option('--report <file>', 'with --compare: write the comparison as JSON {box_baseline, local_only, federated, centralized} (+ federated_ditto with --ditto-lambda), each {mean_dice, sites: {site: {dice, num_examples}}}'))
    .addOption(new Option('--image-size <px>', 'synthetic image size').argParser(parsePositiveInt('--image-size')).default(256))
    .addOption(new Option('--optimizer-state <mode>', `sites keep their Adam state across rounds (keep) or start a fresh one every round (fresh); default ${FitSchema.parse({}).optimizer_state}`).choices(['keep', 'fresh']))
    .addOption(new Option('--box-jitter <sam|px>', BOX_JITTER_HELP).argParser(parseBoxJitterArg('--box-jitter')))
    .addOption(new Option('--box-crop <n|off>', BOX_CROP_HELP).argParser(parseBoxCropArg('--box-crop')))
    .addOption(new Option('--warmup-steps <n>', `linear lr warm-up over a site optimizer's first n steps (default ${FitSchema.parse({}).warmup_steps})`).argParser(parseNonNegInt('--warmup-steps')))
    .addOption(new Option('--lr-decay <f>', `round r trains with lr x f^(r-1) (default ${FitSchema.parse({}).lr_decay}: constant)`).argParser(parsePositiveFloat('--lr-decay')))
    .addOption(new Option('--server-momentum <m>', 'FedAvgM server momentum (with --strategy fedavgm)').argParser(parseFraction('--server-momentum')))
    .addOption(new Option('--eta <eta>', 'FedAdam / FedYogi server learning rate (with --strategy fedadam or fedyogi; default: the strategy\'s, see `fedsam server --help`)').argParser(parsePositiveFloat('--eta')))
    .addOption(new Option('--final-average-rounds <n>', FINAL_AVERAGE_ROUNDS_HELP).argParser(parsePositiveInt('--final-average-rounds')))
    .addOption(new Option('--ditto-lambda <λ>', DITTO_LAMBDA_HELP).argParser(parseNonNegFloat('--ditto-lambda')))
    .addOption(new Option('--dashboard <host:port>', 'serve the live federation page here (port 0: any free port)').default('127.0.0.1:0'))
    .addOption(new Option('--no-dashboard', 'no live page'))
    .addOption(new Option('--quiet', 'no progress bars'))
    .action(async (o) => {
      if (o.report && !o.compare) throw new InvalidArgumentError('--report needs --compare (it writes the comparison table)');
      await simulate({ ...o, cacheDir: o.cacheDir ?? resolve(o.out, 'cache') }, print);
    });
}
