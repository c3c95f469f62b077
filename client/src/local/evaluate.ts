// Dice and IoU of a model on one site's data, next to the box baseline: what `fedsam evaluate` runs.
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { renderTable } from '@fedsam/shared/table';
import { writeOverlayPng, overlayMask } from '@fedsam/shared/image';
import { prepareSite, type SiteOptions } from '../engine/site.ts';
import { evaluateItems } from '../engine/trainer.ts';

export interface EvaluateLocalOptions extends SiteOptions {
  overlays?: string;
  overlayCount: number;
  split: 'val' | 'all';
}

export async function evaluateLocal(o: EvaluateLocalOptions, print: (s: string) => void = (s) => process.stdout.write(s + '\n')) {
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
