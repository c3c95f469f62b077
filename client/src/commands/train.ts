// fedsam train / fedsam evaluate: local-only (or centralized) fine-tuning and evaluation on a site's data.
import { mkdir, writeFile } from 'node:fs/promises';
import { writeFileAtomic } from '@fedsam/shared/fsutil';
import { join, resolve } from 'node:path';
import { saveSamCheckpoint } from '@fedsam/shared/checkpoint';
import { renderTable } from '@fedsam/shared/table';
import type { HostTensor } from '@fedsam/shared/safetensors';
import type { LoadedModel } from '@fedsam/shared/model/presets';
import { writeOverlayPng, overlayMask } from '@fedsam/shared/image';
import { prepareSite, type SiteOptions } from '../engine/site.ts';
import { trainDecoder, evaluateItems, type EvalMetrics, type EpochMetrics } from '../engine/trainer.ts';

export function modelToHost(loaded: LoadedModel): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const [name, t] of loaded.model.weights) out.set(name, { dtype: 'float32', shape: [...t.shape], data: t.dataSync() as Float32Array });
  return out;
}

/** Save a full HF SamModel folder (config.json + model.safetensors + preprocessor_config.json). */
export async function saveModelFolder(dir: string, loaded: LoadedModel): Promise<void> {
  await saveSamCheckpoint(dir, loaded.config, modelToHost(loaded));
  const pp = loaded.processor.config;
  await writeFile(join(dir, 'preprocessor_config.json'), JSON.stringify({ image_processor_type: 'SamImageProcessor', processor_class: 'SamProcessor', ...pp }, null, 2) + '\n');
}

const writeJsonAtomic = (file: string, value: unknown) => writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n');

export interface TrainCommandOptions extends SiteOptions {
  epochs: number;
  lr?: number;
  batchSize: number;
  seed: number;
  out: string;
  jitter: number;
  /** [positive, negative] point prompts per object besides the box. */
  points?: number[];
  dataParallel?: 'auto' | 'on' | 'off';
}

const EVAL_HEADERS = ['epoch', 'train loss', 'val Dice', 'val IoU', 'Dice@low-res', 'IoU@low-res', 'box Dice', 'seconds'];
const evalRow = (label: string | number, loss: number | undefined, m: EvalMetrics | undefined, s?: number) =>
  [label, loss, m?.dice, m?.iou, m?.dice256, m?.iou256, m?.boxDice, s];

export async function trainCommand(o: TrainCommandOptions, print: (s: string) => void = (s) => process.stdout.write(s + '\n')) {
  const site = await prepareSite({ ...o, log: (l) => process.stderr.write(l + '\n') });
  const lr = o.lr ?? site.loaded.recommendedLr;
  print(`model ${site.loaded.source}; ${site.train.length} training / ${site.val.length} validation objects (${site.trainGroups.length} / ${site.valGroups.length} groups); lr ${lr}, batch ${o.batchSize}, ${o.epochs} epochs`);
  if (!site.val.length) print('warning: no validation split (a single group?): validation metrics are not reported');
  const rows: ReturnType<typeof evalRow>[] = [];
  const untrained = site.val.length ? await evaluateItems(site.loaded, site.cache, site.val) : undefined;
  rows.push(evalRow('untrained', undefined, untrained));
  print(renderTable(EVAL_HEADERS, rows));
  const history = await trainDecoder(site.loaded, site.cache, site.train, site.val, {
    epochs: o.epochs, lr, batchSize: o.batchSize, seed: o.seed, jitter: o.jitter, quiet: o.quiet,
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
    model: site.loaded.source, data: resolve(o.data), lr, batch_size: o.batchSize, epochs: o.epochs, seed: o.seed, val_split: o.valSplit,
    train_objects: site.train.length, val_objects: site.val.length, skipped: site.report.skipped,
    untrained, history, final: history[history.length - 1]?.val, box_baseline_dice: untrained?.boxDice,
    cache: { dir: site.cache.dir, ...site.cache.stats },
  };
  await writeJsonAtomic(join(out, 'metrics.json'), metrics);
  print(`\nwrote ${out} (HF SamModel folder: config.json, model.safetensors, preprocessor_config.json) and metrics.json`);
  site.loaded.model.dispose();
  return metrics;
}

export interface EvaluateCommandOptions extends SiteOptions {
  overlays?: string;
  overlayCount: number;
  split: 'val' | 'all';
}

export async function evaluateCommand(o: EvaluateCommandOptions, print: (s: string) => void = (s) => process.stdout.write(s + '\n')) {
  const site = await prepareSite({ ...o, noSplit: o.split === 'all', log: (l) => process.stderr.write(l + '\n') });
  const items = site.val;
  if (!items.length) throw new Error('the validation split is empty (one group only?): use --split all');
  let written = 0;
  if (o.overlays) await mkdir(resolve(o.overlays), { recursive: true });
  const m = await evaluateItems(site.loaded, site.cache, items, {
    onPrediction: async (it, pred) => {
      if (!o.overlays || written >= o.overlayCount) return;
      const img = await it.sample.loadImage();
      const gt = await it.sample.loadMask();
      // prediction filled in blue, ground truth outlined in green
      const withPred = { ...img, data: overlayMask(img, pred, { color: [30, 144, 255], alpha: 0.45 }) };
      const file = join(resolve(o.overlays), `${String(written).padStart(3, '0')}-${it.sample.id.replace(/[^A-Za-z0-9._-]+/g, '_')}.png`);
      await writeOverlayPng(file, withPred, gt, { alpha: 0, outlineColor: [0, 220, 0], color: [0, 220, 0] });
      written++;
    },
  });
  print(`model ${site.loaded.source}; ${items.length} objects (${o.split === 'all' ? 'all data' : 'validation split'})`);
  print(renderTable(['objects', 'Dice', 'IoU', 'Dice@low-res', 'IoU@low-res', 'box Dice'], [[m.n, m.dice, m.iou, m.dice256, m.iou256, m.boxDice]]));
  if (o.overlays) print(`wrote ${written} overlays to ${resolve(o.overlays)} (blue: prediction, green outline: ground truth)`);
  site.loaded.model.dispose();
  return m;
}
