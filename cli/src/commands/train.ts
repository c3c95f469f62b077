// fedsam train: local-only (or centralized) fine-tuning of the mask decoder on one site's data.
import { SAM_FINETUNE_LR, TINY_MODEL_LR } from '@fedsam/shared/train/lr';
import { Option, type Command } from 'commander';
import { trainLocal } from '@fedsam/client/local/train';
import { BOX_JITTER_HELP } from '@fedsam/shared/train/boxJitter';
import { parseBoxJitterArg, parseCounts, parsePositiveFloat, parsePositiveInt } from '../args.ts';
import { datasetOptions, print, siteDataOptions, timestampedRun } from '../options.ts';

export function registerTrainCommand(program: Command): Command {
  return siteDataOptions(program.command('train'))
    .description('fine-tune the mask decoder on local data (local-only or centralized baseline); writes an HF model folder and metrics.json')
    .addOption(new Option('--epochs <n>', 'passes over the training split').argParser(parsePositiveInt('--epochs')).default(10))
    .addOption(new Option('--lr <lr>', `Adam learning rate (default ${SAM_FINETUNE_LR} for downloaded SAM weights, ${TINY_MODEL_LR} for the built-in model)`).argParser(parsePositiveFloat('--lr')))
    .addOption(new Option('--batch-size <n>', 'objects per step').argParser(parsePositiveInt('--batch-size')).default(4))
    .addOption(new Option('--box-jitter <sam|px>', BOX_JITTER_HELP).argParser(parseBoxJitterArg('--box-jitter')))
    .addOption(new Option('--data-parallel <mode>', 'split each batch over this thread and a worker (auto: with batch >= 2 on 2+ cores)').choices(['auto', 'on', 'off']).default('auto'))
    .addOption(new Option('--points <pos,neg>', 'also prompt with this many points inside / outside each object while training (e.g. 1,1)').argParser(parseCounts('--points', 2)))
    .addOption(new Option('--out <dir>', 'output model folder').default(timestampedRun('train')))
    .action(async (o) => {
      await trainLocal({ ...o, jitter: o.boxJitter, dataset: datasetOptions(o) }, print);
    });
}
