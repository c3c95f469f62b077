// Local-only (or centralized) fine-tuning of the mask decoder on one site's data: what `fedsam train` runs.
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '@fedsam/shared/fsutil';
import { renderTable } from '@fedsam/shared/table';
import { prepareSite, type SiteOptions } from '../engine/site.ts';
import { trainDecoder, evaluateItems, type EvalMetrics, type EpochMetrics } from '../engine/trainer.ts';
import { saveModelFolder } from '../modelFolder.ts';
import { describeBoxJitter, type BoxJitter } from '@fedsam/shared/train/boxJitter';

const writeJsonAtomic = (file: string, value: unknown) => writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n');

export interface TrainLocalOptions extends SiteOptions {
  epochs: number;
  lr?: number;
  batchSize: number;
  seed: number;
  out: string;
  /** Box-prompt noise in training; default: the model's own (boxJitter.ts). */
  jitter?: BoxJitter;
  /** [positive, negative] point prompts per object besides the box. */
  points?: number[];
  dataParallel?: 'auto' | 'on' | 'off';
}

const EVAL_HEADERS = ['epoch', 'train loss', 'val Dice', 'val IoU', 'Dice@low-res', 'IoU@low-res', 'box Dice', 'seconds'];
const evalRow = (label: string | number, loss: number | undefined, m: EvalMetrics | undefined, s?: number) =>
  [label, loss, m?.dice, m?.iou, m?.dice256, m?.iou256, m?.boxDice, s];

export async function trainLocal(o: TrainLocalOptions, print: (s: string) => void = (s) => process.stdout.write(s + '\n')) {
  const site = await prepareSite({ ...o, log: (l) => process.stderr.write(l + '\n') });
  const lr = o.lr ?? site.loaded.recommendedLr;
  const jitter = o.jitter ?? site.loaded.recommendedBoxJitter;
  print(`model ${site.loaded.source}; ${site.train.length} training / ${site.val.length} validation objects (${site.trainGroups.length} / ${site.valGroups.length} groups); lr ${lr}, batch ${o.batchSize}, ${o.epochs} epochs; ${describeBoxJitter(jitter)}`);
  if (!site.val.length) print('warning: no validation split (a single group?): validation metrics are not reported');
  const rows: ReturnType<typeof evalRow>[] = [];
  const untrained = site.val.length ? await evaluateItems(site.loaded, site.cache, site.val) : undefined;
  rows.push(evalRow('before', undefined, untrained));
  print(renderTable(EVAL_HEADERS, rows));
  const history = await trainDecoder(site.loaded, site.cache, site.train, site.val, {
    epochs: o.epochs, lr, batchSize: o.batchSize, seed: o.seed, jitter, quiet: o.quiet,
    points: o.points ? { positive: o.points[0], negative: o.points[1] } : undefined,
    dataParallel: o.dataParallel === 'on' ? true : o.dataParallel === 'off' ? false : undefined,
    onEpoch: (m: EpochMetrics) => {
      rows.push(evalRow(m.epoch, m.trainLoss, m.val, m.seconds));
      print(renderTable(EVAL_HEADERS, [rows[rows.length - 1]]).split('\n')[2]);
    },
  });
  const out = resolve(o.out);
  await mkdir(out, { recursive: true });
  await saveModelFolder(out, site.loaded);
  const metrics = {
    model: site.loaded.source, data: resolve(o.data), lr, box_jitter: jitter, batch_size: o.batchSize, epochs: o.epochs, seed: o.seed, val_split: o.valSplit,
    train_objects: site.train.length, val_objects: site.val.length, skipped: site.report.skipped,
    untrained, history, final: history[history.length - 1]?.val, box_baseline_dice: untrained?.boxDice,
    cache: { dir: site.cache.dir, ...site.cache.stats },
  };
  await writeJsonAtomic(join(out, 'metrics.json'), metrics);
  print(`\nwrote ${out} (HF SamModel folder: config.json, model.safetensors, preprocessor_config.json) and metrics.json`);
  site.loaded.model.dispose();
  return metrics;
}
