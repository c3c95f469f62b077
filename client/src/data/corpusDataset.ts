// `fedsam synth --generator corpus`: a dataset folder (images/ + label-indexed masks/) drawn from the pretraining
// corpus, so `fedsam evaluate` / `fedsam train` can use it. Image i is the corpus sample drawn with
// Rng(`${seed}/sample/${index}`), the stream the pretraining loop uses; images without objects are passed over.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { corpusSource, corpusTags, type CorpusSplit } from '@fedsam/shared/pretrain/corpus';
import { checkSample, type PretrainSample } from '@fedsam/shared/pretrain/sample';
import { Rng } from './rng.ts';
import { writePng } from './io.ts';
import { labelStats, filledBox } from './mask.ts';
import { dice } from './metrics.ts';
import { grayFromRGB, otsuInBox } from './otsuInBox.ts';
import { writeContactSheet } from './contactSheet.ts';

export interface CorpusDatasetOptions {
  out: string;
  split: CorpusSplit;
  /** Shape families of another split than `split` (e.g. held-out shapes in train regimes: which of the two a model misses). */
  families?: CorpusSplit;
  /** Appearance regimes of another split than `split`. */
  regimes?: CorpusSplit;
  seed: number;
  images: number;
  /** Longer image side. */
  size: number;
  /** Also write a contact sheet of the first 24 images here. */
  contactSheet?: string;
  log?: (line: string) => void;
}

interface Tally { objects: number; box: number; otsu: number }

export interface CorpusDatasetSummary {
  out: string;
  generator: 'corpus';
  split: CorpusSplit;
  /** The splits the shape families and the appearance regimes were drawn from (both `split` unless overridden). */
  families: CorpusSplit;
  regimes: CorpusSplit;
  seed: number;
  size: number;
  images: number;
  /** Corpus indices written, in file order (img_0000 is indices[0]). */
  indices: number[];
  /** Each written image's tags, in file order: `regime:<name>`, then `object:<family>` per mask label (label k is entry k), ... */
  tags: string[][];
  /** Indices passed over because every object was too small or hidden. */
  empty: number[];
  objects: number;
  boxDice: number;
  otsuDice: number;
  /** Objects and mean baseline Dice per appearance regime / shape family. */
  byRegime: Record<string, { objects: number; box: number; otsu: number }>;
  byFamily: Record<string, { objects: number; box: number; otsu: number }>;
  /** The same by object area: tiny < 64 px <= small < 1024 px <= large. */
  bySize: Record<string, { objects: number; box: number; otsu: number }>;
}

const sizeClass = (area: number) => (area < 64 ? 'tiny (<64 px)' : area < 1024 ? 'small (64-1023 px)' : 'large (>=1024 px)');

function add(t: Record<string, Tally>, k: string, box: number, otsu: number): void {
  const e = (t[k] ??= { objects: 0, box: 0, otsu: 0 });
  e.objects++;
  e.box += box;
  e.otsu += otsu;
}

const mean = (t: Record<string, Tally>) => Object.fromEntries(Object.entries(t).sort().map(([k, v]) => [k, { objects: v.objects, box: v.box / v.objects, otsu: v.otsu / v.objects }]));

export async function writeCorpusDataset(o: CorpusDatasetOptions): Promise<CorpusDatasetSummary> {
  if (!(o.images >= 1)) throw new RangeError('--images must be at least 1');
  const families = o.families ?? o.split, regimes = o.regimes ?? o.split;
  const source = corpusSource({ split: o.split, families, regimes, size: o.size });
  // a previous corpus dataset here would leave stale files behind when fewer images are asked for
  await rm(join(o.out, 'images'), { recursive: true, force: true });
  await rm(join(o.out, 'masks'), { recursive: true, force: true });
  await mkdir(o.out, { recursive: true });
  const indices: number[] = [], tags: string[][] = [], empty: number[] = [], sheet: PretrainSample[] = [];
  const byRegime: Record<string, Tally> = {}, byFamily: Record<string, Tally> = {}, bySize: Record<string, Tally> = {};
  let objects = 0, box = 0, otsu = 0, genMs = 0, drawn = 0;
  for (let index = 0; indices.length < o.images; index++) {
    const t0 = process.cpuUsage();
    const s = source(index, new Rng(`${o.seed}/sample/${index}`));
    const dt = process.cpuUsage(t0);
    genMs += (dt.user + dt.system) / 1000;
    drawn++;
    checkSample(s);
    if (!s.masks.length) {
      empty.push(index);
      continue;
    }
    const file = `img_${String(indices.length).padStart(4, '0')}.png`;
    indices.push(index);
    tags.push(s.tags ?? []);
    const labels = new Uint8Array(s.width * s.height);
    s.masks.forEach((m, k) => { for (let i = 0; i < m.length; i++) if (m[i]) labels[i] = k + 1; });
    await writePng(join(o.out, 'images', file), s.image, s.width, s.height, 3);
    await writePng(join(o.out, 'masks', file), labels, s.width, s.height, 1);
    const gray = grayFromRGB(s.image, s.width, s.height);
    const { regime, families: objectFamilies } = corpusTags(s.tags);
    for (const st of labelStats(labels, s.width, s.height)) {
      const gt = s.masks[st.label - 1]!;
      const b = dice(filledBox(st.box, s.width, s.height), gt), t = dice(otsuInBox(gray, s.width, s.height, st.box).mask, gt);
      box += b;
      otsu += t;
      objects++;
      add(byRegime, regime, b, t);
      add(byFamily, objectFamilies[st.label - 1] ?? '?', b, t);
      add(bySize, sizeClass(st.area), b, t);
    }
    if (o.contactSheet && sheet.length < 24) sheet.push(s);
  }
  if (o.contactSheet) await writeContactSheet(o.contactSheet, sheet);
  const summary: CorpusDatasetSummary = {
    out: o.out, generator: 'corpus', split: o.split, families, regimes, seed: o.seed, size: o.size, images: indices.length, indices, tags, empty, objects,
    boxDice: box / objects, otsuDice: otsu / objects, byRegime: mean(byRegime), byFamily: mean(byFamily), bySize: mean(bySize),
  };
  await writeFile(join(o.out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  await writeFile(join(o.out, 'README.txt'), readme(summary));
  o.log?.(`corpus (${describeSplits(summary)}, seed ${o.seed}): ${summary.images} images, ${objects} objects in ${o.out}; generation ${(genMs / drawn).toFixed(1)} ms CPU per sample`);
  for (const [k, v] of Object.entries(summary.byRegime)) o.log?.(`  regime ${k}: ${v.objects} objects, box-baseline Dice ${fmt3(v.box)}, Otsu-in-box Dice ${fmt3(v.otsu)}`);
  for (const [k, v] of Object.entries(summary.byFamily)) o.log?.(`  family ${k}: ${v.objects} objects, box-baseline Dice ${fmt3(v.box)}, Otsu-in-box Dice ${fmt3(v.otsu)}`);
  for (const [k, v] of Object.entries(summary.bySize)) o.log?.(`  ${k}: ${v.objects} objects, box-baseline Dice ${fmt3(v.box)}, Otsu-in-box Dice ${fmt3(v.otsu)}`);
  o.log?.(`all objects: box-baseline Dice ${fmt3(summary.boxDice)} (filled tight box vs mask), Otsu-in-box Dice ${fmt3(summary.otsuDice)} (Otsu threshold inside the box)`);
  if (o.contactSheet) o.log?.(`contact sheet of the first ${sheet.length} images: ${o.contactSheet}`);
  return summary;
}

const fmt3 = (v: number) => v.toFixed(3);

/** "heldout split", or "heldout shape families in train regimes" when the two differ from the split. */
function describeSplits(s: Pick<CorpusDatasetSummary, 'split' | 'families' | 'regimes'>): string {
  return s.families === s.split && s.regimes === s.split ? `${s.split} split` : `${s.families} shape families in ${s.regimes} regimes`;
}

function readme(s: CorpusDatasetSummary): string {
  return [
    'FedSAM pretraining-corpus data (fedsam synth --generator corpus)',
    '',
    `${describeSplits(s)}, seed ${s.seed}, ${s.images} RGB images, longer side ${s.size} px.`,
    'Layout: images/img_NNNN.png + masks/img_NNNN.png (same stem). Masks are label-indexed: 0 = background,',
    '1..k = objects (each label is one sample with its own box); they look black in viewers.',
    `img_NNNN is corpus sample indices[NNNN] of summary.json, drawn with Rng("${s.seed}/sample/<index>") as the pretraining loop does.`,
    'The splits\' shape families and appearance regimes: see shared/src/pretrain/corpus/families.ts and docs/corpus.md.',
    'Per image, its regime and each label\'s shape family: "tags" in summary.json (parallel to "indices").',
    '',
    `box-baseline Dice ${fmt3(s.boxDice)}, Otsu-in-box Dice ${fmt3(s.otsuDice)} over ${s.objects} objects; per regime and family in summary.json.`,
    '',
  ].join('\n');
}
