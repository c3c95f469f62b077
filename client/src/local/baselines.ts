// Baselines for `fedsam simulate --compare`: local-only (each site trains alone) and centralized (all training data
// pooled) training of the one base model, with the epoch budget of the federated run.
import type { LoadedModel } from '@fedsam/shared/model/presets';
import type { HostTensor } from '@fedsam/shared/safetensors';
import type { Site } from '../engine/site.ts';
import { setDecoderFromHost } from '../engine/decoderWeights.ts';
import { trainDecoder, evaluateItems, startDataParallel, usesDataParallel } from '../engine/trainer.ts';
import type { DataParallel } from '../engine/dataParallel.ts';
import type { BoxJitter } from '@fedsam/shared/train/boxJitter';

export interface BaselineOptions {
  rounds: number;
  epochs: number;
  batchSize: number;
  seed: number;
  /** The federated run's box-prompt noise. */
  boxJitter: BoxJitter;
}

export interface BaselineResult {
  local: Record<string, number>;
  localMean: number;
  central: Record<string, number>;
  centralMean: number;
  epochs: number;
}

/** Local-only (each site trains alone) and centralized (pooled) training with the same epochs budget. */
export async function compareBaselines(o: BaselineOptions, model: LoadedModel, initial: Map<string, HostTensor>, sites: Site[], names: string[], lr: number,
  print: (s: string) => void): Promise<BaselineResult> {
  const epochs = o.rounds * o.epochs;
  // one data-parallel worker for all the baseline runs (when it pays)
  const dp = usesDataParallel(model, { batchSize: o.batchSize }) ? await startDataParallel(model) : false;
  try {
    return await trainBaselines(o, model, initial, sites, names, lr, epochs, dp, print);
  } finally {
    if (dp) await dp.close();
  }
}

async function trainBaselines(o: BaselineOptions, model: LoadedModel, initial: Map<string, HostTensor>, sites: Site[], names: string[], lr: number,
  epochs: number, dp: DataParallel | false, print: (s: string) => void) {
  const local: Record<string, number> = {};
  const central: Record<string, number> = {};
  let ln = 0, ls = 0;
  print(`\nbaselines with the same budget (${epochs} epochs): local-only per site, then centralized on the pooled training data`);
  for (let i = 0; i < sites.length; i++) {
    const s = sites[i];
    setDecoderFromHost(model, initial);
    await trainDecoder(model, s.cache, s.train, [], { epochs, lr, batchSize: o.batchSize, seed: o.seed, jitter: o.boxJitter, quiet: true, dataParallel: dp });
    const m = await evaluateItems(model, s.cache, s.val);
    local[names[i]] = m.dice;
    ls += m.dice * s.val.length;
    ln += s.val.length;
  }
  // Centralized: one model trained on every site's training split (embeddings come from each site's cache).
  const c = sites[0];
  setDecoderFromHost(model, initial);
  const pooled = sites.flatMap((s) => s.train);
  await trainDecoder(model, c.cache, pooled, [], { epochs, lr, batchSize: o.batchSize, seed: o.seed, jitter: o.boxJitter, quiet: true, dataParallel: dp });
  let cn = 0, cs = 0;
  for (let i = 0; i < sites.length; i++) {
    const m = await evaluateItems(model, sites[i].cache, sites[i].val);
    central[names[i]] = m.dice;
    cs += m.dice * sites[i].val.length;
    cn += sites[i].val.length;
  }
  return { local, localMean: ls / ln, central, centralMean: cs / cn, epochs };
}
