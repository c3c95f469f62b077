// Subcommand definitions. Each action validates its flags, calls domain code, prints results to stdout.
import { Command, Option } from 'commander';
import { resolve } from 'node:path';
import { verifyReferenceFolder } from '@fedsam/shared/reference';
import { renderTable } from '@fedsam/shared/table';
import { DEFAULT_MODEL, loadModel } from '@fedsam/shared/model/presets';
import { predict } from '@fedsam/client/commands/predict';
import { trainCommand, evaluateCommand, saveModelFolder } from '@fedsam/client/commands/train';
import { parseNumberList, parsePoint, parsePositiveInt, parsePositiveFloat, parseFraction, parseNonNegInt } from '@fedsam/client/commands/args';
import { synthesize } from '@fedsam/client/data/synth';

const print = (s: string) => process.stdout.write(s + '\n');
const MODEL_HELP = `SAM model folder in HF layout (config.json + model.safetensors), e.g. a download of facebook/sam-vit-base; default: the built-in ${DEFAULT_MODEL}`;

function noBackend(cmd: Command): Command {
  (cmd as Command & { needsBackend?: boolean }).needsBackend = false;
  return cmd;
}

export function registerCommands(program: Command): void {
  program.command('verify-reference')
    .description('check this implementation against golden tensors from the original PyTorch SAM (fixture folders with manifest.json)')
    .argument('<folders...>', 'fixture folders, e.g. ../shared/fixtures/sam-reference/tiny-box')
    .action(async (folders: string[]) => {
      let failed = 0;
      for (const f of folders) {
        const t0 = performance.now();
        const { kind, rows } = await verifyReferenceFolder(resolve(f));
        print(`\n${f}  (${kind}, ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
        print(renderTable(['tensor', 'max abs err', 'max rel err', 'err/tol', 'tolerance', 'result'],
          rows.map((r) => [r.tensor + (r.note ? ` (${r.note})` : ''), r.maxAbs, r.maxRel, r.ratio, r.tolerance, r.pass ? 'ok' : 'FAIL'])));
        const bad = rows.filter((r) => !r.pass).length;
        failed += bad;
        print(bad ? `${bad} of ${rows.length} checks over tolerance` : `all ${rows.length} checks within tolerance`);
      }
      if (failed) process.exitCode = 1;
    });

  program.command('predict')
    .description('segment one object in one image from a box (and optional points); writes the mask and an overlay')
    .option('--model <dir>', MODEL_HELP)
    .requiredOption('--image <file>', 'PNG, JPEG or TIFF image')
    .requiredOption('--box <x0,y0,x1,y1>', 'box around the object in image pixels', parseNumberList('--box', 4))
    .option('--point <x,y,label>', 'extra point prompt (label 1 foreground, 0 background); repeatable', parsePoint)
    .requiredOption('--out <mask.png>', 'binary mask (0/255) at the image size')
    .option('--overlay <overlay.png>', 'picture of the mask drawn over the image')
    .option('--multimask', 'predict 3 masks and keep the one with the highest predicted IoU')
    .action(async (o) => {
      const r = await predict(o);
      print(`mask: ${resolve(o.out)} (${r.width}x${r.height}, ${r.pixels} foreground pixels)`);
      if (o.overlay) print(`overlay: ${resolve(o.overlay)}`);
      print(`predicted IoU: ${r.iou.toFixed(4)}`);
    });

  const siteOptions = (cmd: Command) => cmd
    .option('--model <dir>', MODEL_HELP)
    .requiredOption('--data <path>', 'dataset: images/ + masks/ folder, a CSV/JSONL manifest, or a NIfTI folder (imagesTr/ + labelsTr/)')
    .option('--val-split <fraction>', 'fraction of groups (patients/volumes/images) held out for validation', parseFraction('--val-split'), 0.2)
    .option('--seed <n>', 'seed for the split, shuffling and box jitter', parseNonNegInt('--seed'), 0)
    .option('--cache-dir <dir>', 'embedding cache (default $FEDSAM_CACHE_DIR or ~/.cache/fedsam/embeddings)')
    .option('--float16-cache', 'store cached embeddings as float16 (half the disk)')
    .option('--window <L,W>', 'NIfTI: CT window level,width (default: 0.5-99.5 percentile clipping)')
    .option('--axis <n>', 'NIfTI: slicing axis 0..2', parseNonNegInt('--axis'))
    .option('--quiet', 'no progress bars');
  const datasetOpts = (o: { window?: string; axis?: number }) => ({ window: o.window, axis: o.axis });

  siteOptions(program.command('train'))
    .description('fine-tune the mask decoder on local data (local-only or centralized baseline); writes an HF model folder and metrics.json')
    .option('--epochs <n>', 'passes over the training split', parsePositiveInt('--epochs'), 10)
    .option('--lr <lr>', 'Adam learning rate (default 1e-5 for downloaded SAM weights, 1e-3 for the built-in model)', parsePositiveFloat('--lr'))
    .option('--batch-size <n>', 'objects per step', parsePositiveInt('--batch-size'), 4)
    .option('--jitter <px>', 'max random box enlargement per side while training', parseNonNegInt('--jitter'), 20)
    .option('--out <dir>', 'output model folder', `runs/train-${new Date().toISOString().replace(/[:.]/g, '-')}`)
    .action(async (o) => { await trainCommand({ ...o, float16Cache: o.float16Cache, dataset: datasetOpts(o) }, print); });

  siteOptions(program.command('evaluate'))
    .description('Dice and IoU of a model on a dataset, next to the box baseline')
    .addOption(new Option('--split <which>', 'evaluate the validation split or all data').choices(['val', 'all']).default('val'))
    .option('--overlays <dir>', 'write prediction-vs-ground-truth overlays (PNG) here')
    .option('--overlay-count <n>', 'how many overlays', parsePositiveInt('--overlay-count'), 8)
    .action(async (o) => { await evaluateCommand({ ...o, dataset: datasetOpts(o) }, print); });

  noBackend(program.command('synth'))
    .description('write synthetic segmentation datasets, one per site (images/ + masks/), and print the box baseline')
    .requiredOption('--out <dir>', 'output folder (site-1/, site-2/, ...)')
    .option('--sites <n>', 'number of sites', parsePositiveInt('--sites'), 3)
    .option('--non-iid', 'make sites differ (intensity, contrast, noise, object mix)')
    .option('--seed <n>', 'random seed', parseNonNegInt('--seed'), 0)
    .option('--images-per-site <n>', 'images per site', parsePositiveInt('--images-per-site'), 24)
    .option('--size <px>', 'image side', parsePositiveInt('--size'), 256)
    .action(async (o) => {
      const s = await synthesize({ out: resolve(o.out), sites: o.sites, nonIid: !!o.nonIid, seed: o.seed, imagesPerSite: o.imagesPerSite, size: o.size, log: print });
      void s;
    });

  program.command('save-default-model')
    .description(`write the built-in ${DEFAULT_MODEL} model as an HF SamModel folder (to pass around as --model)`)
    .requiredOption('--out <dir>', 'output folder')
    .action(async (o) => {
      const loaded = await loadModel(undefined);
      await saveModelFolder(resolve(o.out), loaded);
      print(`wrote ${resolve(o.out)} (config.json, model.safetensors, preprocessor_config.json)`);
      loaded.model.dispose();
    });
}
