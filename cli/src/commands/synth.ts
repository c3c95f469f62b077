// fedsam synth: synthetic segmentation datasets: per-site data from the simple generator, or one dataset folder from
// the pretraining corpus (--generator corpus).
import { Option, type Command } from 'commander';
import { resolve } from 'node:path';
import { synthesize } from '@fedsam/client/data/synth';
import { writeCorpusDataset } from '@fedsam/client/data/corpusDataset';
import { CORPUS_SPLITS } from '@fedsam/shared/pretrain/corpus';
import { parseNonNegInt, parsePositiveInt } from '../args.ts';
import { noBackend, print } from '../options.ts';

export function registerSynthCommand(program: Command): Command {
  const cmd: Command = noBackend(program.command('synth'))
    .description('write synthetic segmentation data and print the box and Otsu-in-box baselines. --generator synth (default): ' +
      'one folder per site (images/ + masks/) of rings, crescents, stars, vessels and touching pairs. --generator corpus: one ' +
      'folder (images/ + label-indexed masks/) from the pretraining corpus, its train or held-out shape families and appearance ' +
      'regimes (shared/src/pretrain/corpus/families.ts); evaluate on --split heldout with a --seed the pretraining did not use')
    .addOption(new Option('--out <dir>', 'output folder (synth: site-1/, site-2/, ...; corpus: images/ + masks/)').makeOptionMandatory())
    .addOption(new Option('--generator <name>', 'synth: the simple per-site generator; corpus: the pretraining corpus').choices(['synth', 'corpus']).default('synth'))
    .addOption(new Option('--split <which>', 'corpus only: train (what `fedsam pretrain` sees) or heldout (shape families and regimes it never sees)').choices([...CORPUS_SPLITS]))
    .addOption(new Option('--families <split>', 'corpus only: draw the shape families of this split instead of --split\'s (with --regimes: which of the two a model misses on held-out data)').choices([...CORPUS_SPLITS]))
    .addOption(new Option('--regimes <split>', 'corpus only: draw the appearance regimes of this split instead of --split\'s').choices([...CORPUS_SPLITS]))
    .addOption(new Option('--images <n>', 'corpus only: number of images (with at least one object)').argParser(parsePositiveInt('--images')))
    .addOption(new Option('--contact-sheet <file.png>', 'corpus only: also write a PNG grid of the first 24 images, each beside its object outlines'))
    .addOption(new Option('--sites <n>', 'synth only: number of sites').argParser(parsePositiveInt('--sites')).default(3))
    .addOption(new Option('--non-iid', 'synth only: make sites differ (intensity, contrast, noise, object mix)'))
    .addOption(new Option('--seed <n>', 'random seed').argParser(parseNonNegInt('--seed')).default(0))
    .addOption(new Option('--images-per-site <n>', 'synth only: images per site').argParser(parsePositiveInt('--images-per-site')).default(24))
    .addOption(new Option('--size <px>', 'image side (corpus: the longer side)').argParser(parsePositiveInt('--size')).default(256))
    .action(async (o) => {
      const fromCli = (name: string) => cmd.getOptionValueSource(name) === 'cli';
      if (o.generator === 'corpus') {
        const wrong = ['sites', 'nonIid', 'imagesPerSite'].filter(fromCli);
        if (wrong.length) throw new Error(`--${wrong.map((w) => w.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())).join(', --')} apply to --generator synth only; the corpus writes one dataset folder (use --images)`);
        await writeCorpusDataset({ out: resolve(o.out), split: o.split ?? 'train', families: o.families, regimes: o.regimes, seed: o.seed, images: o.images ?? 64, size: o.size,
          contactSheet: o.contactSheet ? resolve(o.contactSheet) : undefined, log: print });
        return;
      }
      const wrong = ['split', 'families', 'regimes', 'images', 'contactSheet'].filter(fromCli);
      if (wrong.length) throw new Error(`--${wrong.map((w) => w.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())).join(', --')} apply to --generator corpus only`);
      await synthesize({ out: resolve(o.out), sites: o.sites, nonIid: !!o.nonIid, seed: o.seed, imagesPerSite: o.imagesPerSite, size: o.size, log: print });
    });
  return cmd;
}
