// Dice and IoU of a model on one site's data, next to two baselines that use the box alone: the filled box and
// Otsu's threshold inside the box (data/otsuInBox.ts). What `fedsam evaluate` runs.
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { renderTable } from '@fedsam/shared/table';
import { writeOverlayPng, overlayMask } from '@fedsam/shared/image';
import { prepareSite, type SiteOptions } from '../engine/site.ts';
import { evaluateItems, type EvalMetrics } from '../engine/trainer.ts';
import { describeBoxJitter, type BoxJitter } from '@fedsam/shared/train/boxJitter';
import { inWholeImage } from '../data/cropSample.ts';

export interface EvaluateLocalOptions extends SiteOptions {
  overlays?: string;
  overlayCount: number;
  split: 'val' | 'all';
  /** Print one JSON document (model, split, means, per-object records) instead of the tables. */
  json?: boolean;
  /** Prompt with noisy boxes (seeded by `seed`) instead of the tight box. */
  boxJitter?: BoxJitter;
}

export async function evaluateLocal(o: EvaluateLocalOptions, print: (s: string) => void = (s) => process.stdout.write(s + '\n')): Promise<EvalMetrics> {
  const jitter = o.boxJitter !== undefined ? { jitter: o.boxJitter, seed: o.seed ?? 0 } : undefined;
  // under box crops the loose boxes are drawn before cropping, so that each crop lies around the box a user drew
  const site = await prepareSite({ ...o, cropPromptJitter: jitter, noSplit: o.split === 'all', log: (l) => process.stderr.write(l + '\n') });
  const items = site.val;
  if (!items.length) throw new Error('the validation split is empty (one group only?): use --split all');
  let written = 0;
  if (o.overlays) await mkdir(resolve(o.overlays), { recursive: true });
  const m = await evaluateItems(site.loaded, site.cache, items, {
    baselines: true,
    promptJitter: site.boxCrop === undefined ? jitter : undefined,
    onPrediction: async (it, pred, promptBox) => {
      if (!o.overlays || written >= o.overlayCount) return;
      // a box crop is drawn in its whole image: the prediction pasted back, the box where the user drew it
      const whole = inWholeImage(it.sample, pred, promptBox);
      const img = await whole.sample.loadImage();
      const gt = await whole.sample.loadMask();
      // prediction filled in blue, ground truth outlined in green, the prompt box in yellow
      const withPred = { ...img, data: overlayMask(img, whole.pred, { color: [30, 144, 255], alpha: 0.45 }) };
      const file = join(resolve(o.overlays), `${String(written).padStart(3, '0')}-${it.sample.id.replace(/[^A-Za-z0-9._-]+/g, '_')}.png`);
      await writeOverlayPng(file, withPred, gt, { alpha: 0, outlineColor: [0, 220, 0], color: [0, 220, 0], box: whole.box });
      written++;
    },
  });
  const split = o.split === 'all' ? 'all' : 'val';
  const promptsLabel = (o.boxJitter === undefined ? 'the tight box' : `${describeBoxJitter(o.boxJitter)}, seed ${o.seed ?? 0}`) +
    (site.boxCrop !== undefined ? `, in box crops of ${site.boxCrop} box sides` : '');
  if (o.json) {
    const { objects, ...mean } = m;
    print(JSON.stringify({ model: site.loaded.source, data: resolve(o.data), split, prompts: promptsLabel, mean, objects, overlays: o.overlays ? { dir: resolve(o.overlays), written } : undefined }, null, 2));
  } else {
    print(`model ${site.loaded.source}; ${items.length} objects (${split === 'all' ? 'all data' : 'validation split'}); prompts: ${promptsLabel}`);
    print(renderTable(['object', 'area', 'Dice', 'IoU', 'box Dice', 'Otsu Dice'],
      (m.objects ?? []).map((r) => [r.id, r.area, r.dice, r.iou, r.boxDice, r.otsuDice])));
    print('');
    print(renderTable(['objects', 'Dice', 'IoU', 'Dice@low-res', 'IoU@low-res', 'box Dice', 'Otsu Dice'], [[m.n, m.dice, m.iou, m.dice256, m.iou256, m.boxDice, m.otsuDice]]));
    print('box Dice: the filled box as the mask; Otsu Dice: Otsu\'s threshold on the gray pixels inside the box, object = the class rarer on the box outline than inside the box');
    if (o.overlays) print(`wrote ${written} overlays to ${resolve(o.overlays)} (blue: prediction, green outline: ground truth, yellow: prompt box)`);
  }
  site.loaded.model.dispose();
  return m;
}
