// fedsam evaluate: Dice and IoU of a model on one site's data.
import { Option, type Command } from 'commander';
import { evaluateLocal } from '@fedsam/client/local/evaluate';
import { parseBoxJitterArg, parsePositiveInt } from '../args.ts';
import { datasetOptions, print, siteDataOptions } from '../options.ts';

export function registerEvaluateCommand(program: Command): Command {
  return siteDataOptions(program.command('evaluate'))
    .description('Dice and IoU of a model on a dataset, per object and as a mean, next to two baselines that use the box alone: the filled box, and Otsu\'s threshold on the gray pixels inside the box (object = the class rarer on the box outline than inside the box; on a tie the one nearer the box centre)')
    .addOption(new Option('--split <which>', 'evaluate the validation split or all data').choices(['val', 'all']).default('val'))
    .addOption(new Option('--overlays <dir>', 'write overlays (PNG) here: prediction in blue, ground-truth outline in green, prompt box in yellow'))
    .addOption(new Option('--overlay-count <n>', 'how many overlays').argParser(parsePositiveInt('--overlay-count')).default(8))
    .addOption(new Option('--box-jitter <sam|px>', 'prompt with noisy boxes instead of the tight box, seeded by --seed (boxes drawn by hand are loose): N = each side 0..N px looser (the HF recipe\'s training noise), sam = SAM\'s noise; the box and Otsu baselines use the same boxes').argParser(parseBoxJitterArg('--box-jitter')))
    .addOption(new Option('--json', 'print one JSON document instead of the tables: model, split, mean metrics (dice, iou, boxDice, otsuDice, ...) and per-object records'))
    .action(async (o) => {
      await evaluateLocal({ ...o, dataset: datasetOptions(o) }, print);
    });
}
