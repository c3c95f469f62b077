// fedsam synth: synthetic segmentation datasets, one per site.
import { Option, type Command } from 'commander';
import { resolve } from 'node:path';
import { synthesize } from '@fedsam/client/data/synth';
import { parseNonNegInt, parsePositiveInt } from '../args.ts';
import { noBackend, print } from '../options.ts';

export function registerSynthCommand(program: Command): Command {
  return noBackend(program.command('synth'))
    .description('write synthetic segmentation datasets, one per site (images/ + masks/), and print the box baseline')
    .addOption(new Option('--out <dir>', 'output folder (site-1/, site-2/, ...)').makeOptionMandatory())
    .addOption(new Option('--sites <n>', 'number of sites').argParser(parsePositiveInt('--sites')).default(3))
    .addOption(new Option('--non-iid', 'make sites differ (intensity, contrast, noise, object mix)'))
    .addOption(new Option('--seed <n>', 'random seed').argParser(parseNonNegInt('--seed')).default(0))
    .addOption(new Option('--images-per-site <n>', 'images per site').argParser(parsePositiveInt('--images-per-site')).default(24))
    .addOption(new Option('--size <px>', 'image side').argParser(parsePositiveInt('--size')).default(256))
    .action(async (o) => {
      await synthesize({ out: resolve(o.out), sites: o.sites, nonIid: !!o.nonIid, seed: o.seed, imagesPerSite: o.imagesPerSite, size: o.size, log: print });
    });
}
