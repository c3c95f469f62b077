// What several subcommands share: the --model help, the site dataset flags of train / evaluate, the stdout printer,
// and the mark for commands that need no compute backend.
import { Command, Option } from 'commander';
import { DEFAULT_MODEL } from '@fedsam/shared/model/presets';
import { ServerConfigSchema } from '@fedsam/server/config';
import { BOX_CROP_HELP } from '@fedsam/shared/boxCrop';
import { parseBoxCropArg, parseFraction, parseNonNegInt } from './args.ts';

export const print = (s: string) => process.stdout.write(s + '\n');

export const MODEL_HELP = `SAM model folder in HF layout (config.json + model.safetensors), e.g. a download of facebook/sam-vit-base; default: the built-in ${DEFAULT_MODEL}`;

/** `--final-average-rounds` of `fedsam server` and `fedsam simulate`. */
export const FINAL_AVERAGE_ROUNDS_HELP = `the final global is the mean of the last n rounds' globals (default ${ServerConfigSchema.parse({}).final_average_rounds}; 1: the last round's own)`;

/** `--ditto-lambda` of `fedsam server` and `fedsam simulate`. */
export const DITTO_LAMBDA_HELP = 'Ditto personalization: each site also trains a personal model of its own, pulled toward the global with this weight (0: training alone; README "Personal models"); default: none';

/** The command runs no model: main.ts skips choosing a compute backend for it. */
export function noBackend(cmd: Command): Command {
  (cmd as Command & { needsBackend?: boolean }).needsBackend = false;
  return cmd;
}

export function needsBackend(cmd: Command): boolean {
  return (cmd as Command & { needsBackend?: boolean }).needsBackend !== false;
}

/** A site's dataset and embedding cache (fedsam train / evaluate). */
export function siteDataOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--model <dir>', MODEL_HELP))
    .addOption(new Option('--data <path>', 'dataset: images/ + masks/ folder, a CSV/JSONL manifest, or a NIfTI folder (imagesTr/ + labelsTr/)').makeOptionMandatory())
    .addOption(new Option('--val-split <fraction>', 'fraction of groups (patients/volumes/images) held out for validation').argParser(parseFraction('--val-split')).default(0.2))
    .addOption(new Option('--seed <n>', 'seed for the split, shuffling and box jitter').argParser(parseNonNegInt('--seed')).default(0))
    .addOption(new Option('--cache-dir <dir>', 'embedding cache (default $FEDSAM_CACHE_DIR or ~/.cache/fedsam/embeddings)'))
    .addOption(new Option('--float16-cache', 'store cached embeddings as float16 (half the disk)'))
    .addOption(new Option('--window <L,W>', 'NIfTI: CT window level,width (default: 0.5-99.5 percentile clipping)'))
    .addOption(new Option('--axis <n>', 'NIfTI: slicing axis 0..2').argParser(parseNonNegInt('--axis')))
    .addOption(new Option('--box-crop <n|off>', BOX_CROP_HELP).argParser(parseBoxCropArg('--box-crop')))
    .addOption(new Option('--quiet', 'no progress bars'));
}

/** The NIfTI reading options of siteDataOptions. */
export const datasetOptions = (o: { window?: string; axis?: number }) => ({ window: o.window, axis: o.axis });

/** Default output folder name: runs/<what>-<timestamp>. */
export const timestampedRun = (what: string) => `runs/${what}-${new Date().toISOString().replace(/[:.]/g, '-')}`;
