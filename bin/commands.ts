// Subcommand definitions. Each action validates its flags, calls domain code, prints results to stdout.
import { Command, Option } from 'commander';
import { resolve } from 'node:path';
import { verifyReferenceFolder } from '@fedsam/shared/reference';
import { renderTable } from '@fedsam/shared/table';
import { DEFAULT_MODEL, loadModel } from '@fedsam/shared/model/presets';
import { predict } from '@fedsam/client/commands/predict';
import { trainCommand, evaluateCommand, saveModelFolder } from '@fedsam/client/commands/train';
import { parseCounts, parseNumberList, parsePoint, parsePositiveInt, parsePositiveFloat, parseFraction, parseNonNegInt } from '@fedsam/client/commands/args';
import { synthesize } from '@fedsam/client/data/synth';
import { registerServerCommand } from '@fedsam/server/cli';
import { clientCommand } from '@fedsam/client/commands/site';
import { simulateCommand } from '@fedsam/client/commands/simulate';

/** Defaults of `fedsam simulate` (the main job: under 5 minutes on 2 cores). */
export const SIMULATE_DEFAULTS = { rounds: 6, epochs: 2, imagesPerSite: 40 };

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
    .option('--lr <lr>', 'Adam learning rate (default 1e-5 for downloaded SAM weights, 3e-3 for the built-in model)', parsePositiveFloat('--lr'))
    .option('--batch-size <n>', 'objects per step', parsePositiveInt('--batch-size'), 4)
    .option('--jitter <px>', 'max random box enlargement per side while training', parseNonNegInt('--jitter'), 20)
    .addOption(new Option('--data-parallel <mode>', 'split each batch over this thread and a worker (auto: with batch >= 2 on 2+ cores)').choices(['auto', 'on', 'off']).default('auto'))
    .option('--points <pos,neg>', 'also prompt with this many points inside / outside each object while training (e.g. 1,1)', parseCounts('--points', 2))
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

export function registerFederationCommands(program: Command): void {
  registerServerCommand(program);

  program.command('client')
    .description('run a site daemon: join the aggregation server, fine-tune the decoder locally each round, upload the weights')
    .addOption(new Option('--server <host:port>', 'aggregation server').env('FEDSAM_SERVER').makeOptionMandatory())
    .addOption(new Option('--site <name>', 'this site\'s name (the server checks it against the token)').env('FEDSAM_SITE'))
    .addOption(new Option('--token <token>', 'this site\'s secret token').env('FEDSAM_TOKEN'))
    .addOption(new Option('--token-file <file>', 'file holding the token (docker secret)').env('FEDSAM_TOKEN_FILE'))
    .addOption(new Option('--data <path>', 'the site\'s dataset (images/ + masks/, manifest, or NIfTI folder)').env('FEDSAM_DATA').makeOptionMandatory())
    .addOption(new Option('--model <dir>', MODEL_HELP).env('FEDSAM_MODEL'))
    .addOption(new Option('--cache-dir <dir>', 'embedding cache').env('FEDSAM_CACHE'))
    .addOption(new Option('--val-split <fraction>', 'validation fraction of groups (for evaluation rounds)').argParser(parseFraction('--val-split')).default(0.2))
    .addOption(new Option('--seed <n>', 'split seed').argParser(parseNonNegInt('--seed')).default(0))
    .addOption(new Option('--tls', 'TLS with the system CAs').env('FEDSAM_TLS'))
    .addOption(new Option('--tls-ca <pem>', 'CA certificate of the server (enables TLS)').env('FEDSAM_TLS_CA'))
    .addOption(new Option('--tls-cert <pem>', 'client certificate (mutual TLS)').env('FEDSAM_TLS_CLIENT_CERT'))
    .addOption(new Option('--tls-key <pem>', 'client key (mutual TLS)').env('FEDSAM_TLS_CLIENT_KEY'))
    .addOption(new Option('--upload-dtype <dtype>', 'wire dtype of uploads (F16 halves the bytes but rounds away part of small updates: see the README)').choices(['F32', 'F16']).env('FEDSAM_UPLOAD_DTYPE'))
    .addOption(new Option('--download-dtype <dtype>', 'wire dtype of downloads').choices(['F32', 'F16']).env('FEDSAM_DOWNLOAD_DTYPE'))
    .option('--quiet', 'no progress bars')
    .action(async (o) => { await clientCommand(o); });

  program.command('simulate')
    .description('run the whole federation on this machine: aggregator + N site clients over loopback gRPC; per-round Dice table')
    .option('--sites <n>', 'number of sites', parsePositiveInt('--sites'), 3)
    .option('--rounds <n>', 'federated rounds', parsePositiveInt('--rounds'), SIMULATE_DEFAULTS.rounds)
    .option('--data <dir>', 'one dataset per site (a folder of site-1/, site-2/, ...), or one dataset to split across the sites by group; default: synthetic data')
    .option('--non-iid', 'non-IID sites: synthetic sites differ in intensity, contrast, noise and object mix; a split dataset is cut by object size')
    .option('--images-per-site <n>', 'synthetic images per site', parsePositiveInt('--images-per-site'), SIMULATE_DEFAULTS.imagesPerSite)
    .option('--model <dir>', MODEL_HELP)
    .option('--epochs <n>', 'local epochs per round', parsePositiveInt('--epochs'), SIMULATE_DEFAULTS.epochs)
    .option('--lr <lr>', 'local Adam learning rate (default: the model\'s: 1e-5 for SAM weights, 3e-3 for the built-in model)', parsePositiveFloat('--lr'))
    .option('--batch-size <n>', 'local batch size', parsePositiveInt('--batch-size'), 4)
    .addOption(new Option('--strategy <name>', 'aggregation strategy').choices(['fedavg', 'fedprox', 'fedadam', 'fedyogi', 'median', 'trimmed_mean']).default('fedavg'))
    .option('--proximal-mu <mu>', 'FedProx proximal weight', parsePositiveFloat('--proximal-mu'))
    .option('--points <pos,neg>', 'point prompts per object in local training, inside / outside the object (e.g. 1,1; default boxes only)', parseCounts('--points', 2))
    .option('--val-split <fraction>', 'validation fraction per site', parseFraction('--val-split'), 0.25)
    .option('--seed <n>', 'seed for data, split and training', parseNonNegInt('--seed'), 0)
    .option('--out <dir>', 'output folder (data, server state, final model)', `runs/simulate-${new Date().toISOString().replace(/[:.]/g, '-')}`)
    .option('--history <file>', 'write the per-round history as JSON')
    .option('--cache-dir <dir>', 'embedding cache (default: <out>/cache)')
    .option('--compare', 'also train local-only (each site alone) and centralized (pooled) with the same epoch budget')
    .option('--quiet', 'no progress bars')
    .action(async (o) => { await simulateCommand({ ...o, cacheDir: o.cacheDir ?? resolve(o.out, 'cache') }, print); });
}
