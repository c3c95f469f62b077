// fedsam evaluate: Dice and IoU of a model on one site's data.
import { Option, type Command } from 'commander';
import { evaluateLocal } from '@fedsam/client/local/evaluate';
import { parsePositiveInt } from '../args.ts';
import { datasetOptions, print, siteDataOptions } from '../options.ts';

export function registerEvaluateCommand(program: Command): Command {
  return siteDataOptions(program.command('evaluate'))
    .description('Dice and IoU of a model on a dataset, next to the box baseline')
    .addOption(new Option('--split <which>', 'evaluate the validation split or all data').choices(['val', 'all']).default('val'))
    .addOption(new Option('--overlays <dir>', 'write prediction-vs-ground-truth overlays (PNG) here'))
    .addOption(new Option('--overlay-count <n>', 'how many overlays').argParser(parsePositiveInt('--overlay-count')).default(8))
    .action(async (o) => {
      await evaluateLocal({ ...o, dataset: datasetOptions(o) }, print);
    });
}
