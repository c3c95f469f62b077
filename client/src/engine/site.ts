// Everything a site needs before training: the model, its dataset with a grouped train/validation split,
// and the cached embeddings. Shared by `fedsam train`, `fedsam evaluate`, the site daemon and the simulation.
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadModel, type LoadedModel } from '@fedsam/shared/model/presets';
import { loadDataset, formatReport } from '../data/datasets.ts';
import { splitByGroup } from '../data/split.ts';
import { Rng } from '../data/rng.ts';
import type { Box, DatasetReport, Sample } from '../data/types.ts';
import type { LoadOptions } from '../data/options.ts';
import { EmbeddingCache } from './cache.ts';
import { boxCropFactor, modelBoxCrop, type BoxCrop } from '@fedsam/shared/boxCrop';
import type { BoxJitter } from '@fedsam/shared/train/boxJitter';
import { boxPrompt } from '../data/prompts.ts';
import { cropSample } from '../data/cropSample.ts';
import { prepareItems, type EngineItem } from './trainer.ts';

export function defaultCacheDir(): string {
  if (process.env.FEDSAM_CACHE_DIR) return resolve(process.env.FEDSAM_CACHE_DIR);
  const base = process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache');
  return join(base, 'fedsam', 'embeddings');
}

export interface SiteOptions {
  model?: string | LoadedModel;
  data: string;
  valSplit?: number;
  seed?: number;
  cacheDir?: string;
  float16Cache?: boolean;
  quiet?: boolean;
  /** Use every sample for both (evaluate --split all). */
  noSplit?: boolean;
  dataset?: LoadOptions;
  /** Use only this site's share of a dataset split across `sites` sites by group (simulation of one dataset). */
  partition?: Partition;
  /** Embedding worker threads (default: as many as pay, see embedPool.ts; 0 = embed on this thread). */
  embedWorkers?: number;
  /** Segment each object in a crop of this many box sides around its box (shared/src/boxCrop.ts); default: the model folder's. */
  boxCrop?: BoxCrop;
  /**
   * Evaluation with loose prompt boxes under box crops: draw them here (in validation order from `seed`, rounded, as
   * evaluateItems' promptJitter draws them), so that each crop is placed around the box a user would draw.
   */
  cropPromptJitter?: { jitter: BoxJitter; seed: number };
  log?: (line: string) => void;
}

export interface Partition { sites: number; index: number; seed: number; nonIid: boolean }

/**
 * Assign whole groups (patients / volumes / images) to sites. IID: groups shuffled by seed and dealt round-robin.
 * Non-IID: groups sorted by their mean object area and cut into contiguous blocks, so each site sees a different
 * object-size distribution (a label-distribution skew).
 */
export function partitionSamples(samples: readonly Sample[], p: Partition): Sample[] {
  const byGroup = new Map<string, Sample[]>();
  for (const s of samples) byGroup.set(s.group, [...(byGroup.get(s.group) ?? []), s]);
  let groups = [...byGroup.keys()].sort();
  if (groups.length < p.sites) throw new Error(`cannot split ${groups.length} groups across ${p.sites} sites`);
  let mine: string[];
  if (p.nonIid) {
    const area = (g: string) => { const xs = byGroup.get(g)!; return xs.reduce((a, s) => a + s.area, 0) / xs.length; };
    groups = groups.sort((a, b) => area(a) - area(b) || (a < b ? -1 : 1));
    const per = groups.length / p.sites;
    mine = groups.slice(Math.round(p.index * per), Math.round((p.index + 1) * per));
  } else {
    new Rng(p.seed).fork('partition').shuffle(groups);
    mine = groups.filter((_, i) => i % p.sites === p.index);
  }
  const set = new Set(mine);
  return samples.filter((s) => set.has(s.group));
}

export interface Site {
  loaded: LoadedModel;
  cache: EmbeddingCache;
  samples: Sample[];
  report: DatasetReport;
  train: EngineItem[];
  val: EngineItem[];
  trainGroups: string[];
  valGroups: string[];
  /** The box crop in use (shared/src/boxCrop.ts), undefined for the whole image. */
  boxCrop: number | undefined;
}

export async function prepareSite(o: SiteOptions): Promise<Site> {
  const loaded = typeof o.model === 'object' ? o.model : await loadModel(o.model);
  const loadedSet = await loadDataset(o.data, o.dataset);
  const report = loadedSet.report;
  const mine = o.partition ? partitionSamples(loadedSet.samples, o.partition) : loadedSet.samples;
  o.log?.(formatReport(report));
  const split = o.noSplit
    ? { train: mine, val: mine, trainGroups: [], valGroups: [] }
    : splitByGroup(mine, { valFraction: o.valSplit ?? 0.2, seed: o.seed ?? 0 });
  const crop = boxCropFactor(o.boxCrop ?? modelBoxCrop(loaded.processor.config));
  const modelInput = loaded.processor.longestEdge;
  if (crop !== undefined) o.log?.(`box crops: each object in a square of ${crop} x its box's longer side, resized to ${modelInput} px`);
  const pj = crop !== undefined ? o.cropPromptJitter : undefined;
  const rng = pj ? new Rng(pj.seed).fork('eval-boxes') : undefined;
  const prompts = new Map(pj ? split.val.map((s) => [s.id, boxPrompt(s.box, s.width, s.height, rng!, pj.jitter).map(Math.round) as Box]) : []);
  const samples = crop === undefined ? mine : mine.map((s) => cropSample(s, modelInput, crop, prompts.get(s.id)));
  const cache = new EmbeddingCache({ dir: o.cacheDir ?? defaultCacheDir(), visionHash: loaded.visionHash, processor: loaded.processor.config, float16: o.float16Cache });
  // One pass over all images (train and validation share the cache), then items per side.
  const all = await prepareItems(loaded, cache, samples, { quiet: o.quiet, workers: o.embedWorkers });
  const byId = new Map(all.map((it) => [it.sample.id, it]));
  return {
    loaded, cache, samples, report,
    train: split.train.map((s) => byId.get(s.id)!),
    val: split.val.map((s) => byId.get(s.id)!),
    trainGroups: split.trainGroups, valGroups: split.valGroups, boxCrop: crop,
  };
}
