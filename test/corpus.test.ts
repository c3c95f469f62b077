// The pretraining corpus: the sample contract, determinism per seed, disjoint train / held-out families and
// regimes, and `fedsam synth --generator corpus` writing a dataset folder that loads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { corpusSource, easyShare, pretrainCorpus, heldoutCorpus } from '@fedsam/shared/pretrain/corpus';
import { REGIMES, SHAPE_FAMILIES } from '@fedsam/shared/pretrain/corpus/families';
import { MIN_OBJECT_PIXELS } from '@fedsam/shared/pretrain/corpus/scene';
import { checkSample, type PretrainSample } from '@fedsam/shared/pretrain/sample';
import { plainScenes } from '@fedsam/shared/pretrain/plainScenes';
import { withColourJitter } from '@fedsam/shared/pretrain/colourJitter';
import { withPlainScenes } from '@fedsam/shared/pretrain/plainMix';
import { Rng } from '@fedsam/shared/rng';
import { hashFile, loadDataset } from '../client/src/data/index.ts';
import { writeCorpusDataset } from '../client/src/data/corpusDataset.ts';
import { runFedsam as fedsam } from './helpers/fed-harness.ts';

const draw = (src: typeof pretrainCorpus, seed: number, index: number) => src(index, new Rng(`${seed}/sample/${index}`));

function tagged(s: PretrainSample, kind: string): string[] {
  return (s.tags ?? []).filter((t) => t.startsWith(kind + ':')).map((t) => t.slice(kind.length + 1));
}

test('train and held-out shape families and regimes are disjoint, and each split draws only its own', () => {
  const names = (xs: readonly { name: string }[]) => new Set(xs.map((x) => x.name));
  for (const [a, b] of [[names(SHAPE_FAMILIES.train), names(SHAPE_FAMILIES.heldout)], [names(REGIMES.train), names(REGIMES.heldout)]] as const) {
    assert.ok(a.size >= 3 && b.size >= 3);
    for (const x of a) assert.ok(!b.has(x), `${x} is in both splits`);
  }
  for (const [src, split] of [[pretrainCorpus, 'train'], [heldoutCorpus, 'heldout']] as const) {
    const seenRegimes = new Set<string>(), seenFamilies = new Set<string>();
    for (let i = 0; i < 24; i++) {
      const s = draw(src, 5, i);
      tagged(s, 'regime').forEach((r) => seenRegimes.add(r));
      tagged(s, 'object').forEach((f) => seenFamilies.add(f));
    }
    assert.deepEqual([...seenRegimes].filter((r) => !names(REGIMES[split]).has(r)), [], `${split} drew a foreign regime`);
    assert.deepEqual([...seenFamilies].filter((f) => !names(SHAPE_FAMILIES[split]).has(f)), [], `${split} drew a foreign family`);
    assert.ok(seenRegimes.size >= 2 && seenFamilies.size >= 3, `${split}: ${[...seenRegimes]} / ${[...seenFamilies]}`);
  }
});

test('corpus samples keep the contract: RGB HxWx3, binary disjoint non-empty masks, one family tag per mask', () => {
  let objects = 0, tiny = 0, large = 0, bright = 0, dark = 0;
  for (const src of [pretrainCorpus, heldoutCorpus]) {
    for (let i = 0; i < 20; i++) {
      const s = draw(src, 11, i);
      checkSample(s);
      assert.ok(Math.max(s.width, s.height) === 256 && Math.min(s.width, s.height) >= 150);
      assert.equal(tagged(s, 'object').length, s.masks.length);
      const owner = new Uint8Array(s.width * s.height);
      for (const m of s.masks) {
        let area = 0, inside = 0, outside = 0;
        for (let j = 0; j < m.length; j++) {
          if (!m[j]) continue;
          assert.equal(owner[j], 0, 'masks overlap');
          owner[j] = 1;
          area++;
        }
        assert.ok(area >= MIN_OBJECT_PIXELS, `mask of ${area} pixels`);
        objects++;
        if (area < 100) tiny++;
        if (area > 0.1 * m.length) large++;
        // polarity: object luma vs the image's mean luma
        for (let j = 0; j < m.length; j++) (m[j] ? (inside += s.image[3 * j]! + s.image[3 * j + 1]! + s.image[3 * j + 2]!) : (outside += s.image[3 * j]! + s.image[3 * j + 1]! + s.image[3 * j + 2]!));
        if (inside / area > outside / (m.length - area)) bright++;
        else dark++;
      }
    }
  }
  // breadth: small and large objects, both polarities
  assert.ok(objects > 40, `${objects} objects`);
  for (const [what, n] of Object.entries({ tiny, large, bright, dark })) assert.ok(n >= 0.05 * objects, `${what}: ${n} of ${objects}`);
});

test('a sample depends only on its seed: same seed same bytes, another seed another image; options change the draw', () => {
  const a = draw(pretrainCorpus, 3, 7), b = draw(pretrainCorpus, 3, 7), c = draw(pretrainCorpus, 4, 7);
  assert.deepEqual(a.image, b.image);
  assert.deepEqual(a.masks, b.masks);
  assert.notDeepEqual(a.image, c.image);
  const small = corpusSource({ size: 64, square: true })(0, new Rng('1/sample/0'));
  assert.equal(small.width, 64);
  assert.equal(small.height, 64);
  assert.throws(() => corpusSource({ size: 8 }), /size must be an integer >= 32/);
});

test('the curriculum: easy scenes (1-3 large objects) first, their share falling to the floor; other samples unchanged', () => {
  const curriculum = { rampSamples: 100, floor: 0.2 };
  assert.equal(easyShare(curriculum, 0), 1);
  assert.equal(easyShare(curriculum, 50), 0.5);
  assert.equal(easyShare(curriculum, 1000), 0.2);
  assert.equal(easyShare(undefined, 0), 0);
  const src = corpusSource({ split: 'train', curriculum });
  let easy = 0;
  const share = (s: PretrainSample) => s.masks.map((m) => m.reduce((a, b) => a + b, 0) / (s.width * s.height));
  const easyAreas: number[] = [], hardAreas: number[] = [];
  for (let i = 0; i < 12; i++) {
    const s = draw(src, 9, i);
    checkSample(s);
    if (!s.tags!.includes('easy')) continue;
    easy++;
    assert.ok(s.masks.length >= 1 && s.masks.length <= 3, `${s.masks.length} objects in an easy scene`);
    easyAreas.push(...share(s));
    hardAreas.push(...share(draw(pretrainCorpus, 9, i)));
  }
  assert.ok(easy >= 8, `${easy} of the first 12 samples are easy`);
  const tiny = (xs: number[]) => xs.filter((a) => a * 256 * 256 < 64).length / xs.length; // < 64 px at 256 px
  assert.ok(tiny(easyAreas) <= 0.1 && tiny(easyAreas) < tiny(hardAreas), `tiny objects: ${tiny(easyAreas)} of the easy ones, ${tiny(hardAreas)} of the corpus's`);
  const late = Array.from({ length: 40 }, (_, i) => draw(src, 9, 1000 + i)).filter((s) => s.tags!.includes('easy')).length;
  assert.ok(late > 0 && late < 20, `${late} of 40 late samples are easy (floor 0.2)`);
  // a sample drawn hard is the very sample the corpus without a curriculum gives
  const hard = Array.from({ length: 40 }, (_, i) => 1000 + i).find((i) => !draw(src, 9, i).tags!.includes('easy'))!;
  assert.deepEqual(draw(src, 9, hard).image, draw(corpusSource({ split: 'train' }), 9, hard).image);
});

test('fedsam synth --generator corpus writes a loadable, deterministic dataset folder; wrong flag mixes are refused', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-corpus-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // the command once (and its refusals and help, concurrently); the library for the determinism copies
  const [r, mixed, mixed2, help] = await Promise.all([
    fedsam(['synth', '--generator', 'corpus', '--split', 'heldout', '--images', '6', '--size', '96', '--seed', '2', '--out', join(dir, 'a')]),
    fedsam(['synth', '--generator', 'corpus', '--sites', '2', '--out', join(dir, 'x')]),
    fedsam(['synth', '--split', 'heldout', '--out', join(dir, 'y')]),
    fedsam(['synth', '--help']),
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /box-baseline Dice \d\.\d{3} .*Otsu-in-box Dice \d\.\d{3}/);
  for (const [out, seed] of [['b', 2], ['c', 3]] as const) await writeCorpusDataset({ out: join(dir, out), split: 'heldout', seed, images: 6, size: 96 });
  const digest = async (out: string) => Promise.all((await readdir(join(dir, out, 'images'))).sort().flatMap((f) => ['images', 'masks'].map((sub) => hashFile(join(dir, out, sub, f)))));
  const [a, b, c] = [await digest('a'), await digest('b'), await digest('c')];
  assert.equal(a.length, 12);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  const summary = JSON.parse(await readFile(join(dir, 'a', 'summary.json'), 'utf8')) as { split: string; images: number; objects: number; byRegime: Record<string, unknown> };
  assert.equal(summary.split, 'heldout');
  for (const r of Object.keys(summary.byRegime)) assert.ok(REGIMES.heldout.some((x) => x.name === r), r);
  const ds = await loadDataset(join(dir, 'a'));
  assert.equal(ds.report.images, 6);
  assert.equal(ds.samples.length, summary.objects);
  assert.deepEqual(ds.report.skipped, []);

  assert.notEqual(mixed.code, 0);
  assert.match(mixed.stderr, /--sites apply to --generator synth only/);
  assert.notEqual(mixed2.code, 0);
  assert.match(mixed2.stderr, /--split apply to --generator corpus only/);
  for (const flag of ['--generator', '--split', '--families', '--regimes', '--images', '--contact-sheet']) assert.match(help.stdout, new RegExp(flag));
});

test('fedsam synth --families / --regimes mix the splits (held-out shapes in train regimes and the reverse), tags in summary.json', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-corpus-mix-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const names = (xs: readonly { name: string }[]) => new Set(xs.map((x) => x.name));
  const [r, wrong] = await Promise.all([
    fedsam(['synth', '--generator', 'corpus', '--split', 'train', '--families', 'heldout', '--images', '8', '--size', '96', '--seed', '4', '--out', join(dir, 'hf')]),
    fedsam(['synth', '--regimes', 'heldout', '--out', join(dir, 'y')]),
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /heldout shape families in train regimes/);
  await writeCorpusDataset({ out: join(dir, 'hr'), split: 'train', regimes: 'heldout', seed: 4, images: 8, size: 96 });
  for (const [sub, families, regimes] of [['hf', 'heldout', 'train'], ['hr', 'train', 'heldout']] as const) {
    const s = JSON.parse(await readFile(join(dir, sub, 'summary.json'), 'utf8')) as { families: string; regimes: string; indices: number[]; tags: string[][]; objects: number };
    assert.deepEqual([s.families, s.regimes], [families, regimes]);
    assert.equal(s.tags.length, s.indices.length);
    const fams = s.tags.flatMap((tg) => tg.filter((x) => x.startsWith('object:')).map((x) => x.slice(7)));
    const regs = s.tags.flatMap((tg) => tg.filter((x) => x.startsWith('regime:')).map((x) => x.slice(7)));
    assert.ok(fams.length >= s.objects, `${fams.length} family tags for ${s.objects} objects`);
    for (const f of fams) assert.ok(names(SHAPE_FAMILIES[families]).has(f), `${sub}: family ${f} is not ${families}`);
    for (const g of regs) assert.ok(names(REGIMES[regimes]).has(g), `${sub}: regime ${g} is not ${regimes}`);
  }
  assert.notEqual(wrong.code, 0);
  assert.match(wrong.stderr, /--regimes apply to --generator corpus only/);
});

test('plain scenes: 2-3 bright, separate objects on dark noise, the same for the same seed', () => {
  for (let i = 0; i < 20; i++) {
    const s = plainScenes(i, new Rng(`plain/${i}`));
    checkSample(s);
    assert.ok(s.masks.length >= 2 && s.masks.length <= 3, `${s.masks.length} objects`);
    const owner = new Int8Array(s.width * s.height);
    s.masks.forEach((m, k) => m.forEach((v, p) => { if (v) { assert.equal(owner[p], 0, 'objects overlap'); owner[p] = k + 1; } }));
    for (let p = 0; p < owner.length; p++) assert.ok(owner[p] ? s.image[3 * p]! >= 200 : s.image[3 * p]! <= 70, `pixel ${p}`);
    assert.deepEqual(plainScenes(i, new Rng(`plain/${i}`)).image, s.image);
  }
});

test('plain scenes first and mixed in: the other corpus continues at its own index 0 and keeps its samples', () => {
  const corpus = corpusSource({ split: 'train', size: 64 });
  const mixed = withPlainScenes(corpus, { warmupSamples: 10, share: 0.3 });
  const isPlain = (s: PretrainSample) => s.tags?.includes('plain') ?? false;
  for (let i = 0; i < 10; i++) assert.ok(isPlain(mixed(i, new Rng(`m/${i}`))), `warm-up sample ${i}`);
  let plain = 0;
  for (let i = 10; i < 210; i++) {
    const s = mixed(i, new Rng(`m/${i}`));
    if (isPlain(s)) { plain++; continue; }
    assert.deepEqual(s.image, corpus(i - 10, new Rng(`m/${i}`)).image, `sample ${i}`);
  }
  assert.ok(plain > 40 && plain < 80, `${plain} of 200 plain after the warm-up (share 0.3)`);
  assert.throws(() => withPlainScenes(corpus, { warmupSamples: 0, share: 2 }), /share/);
});

test('colour jitter: the share of samples in new colours, deterministic, masks untouched', () => {
  const jittered = withColourJitter(pretrainCorpus, 1), none = withColourJitter(pretrainCorpus, 0);
  let coloured = 0;
  for (let i = 0; i < 12; i++) {
    const base = draw(pretrainCorpus, 6, i), j = draw(jittered, 6, i);
    checkSample(j);
    assert.deepEqual(draw(none, 6, i).image, base.image);
    assert.deepEqual(j.masks, base.masks);
    assert.deepEqual(draw(jittered, 6, i).image, j.image, 'deterministic');
    assert.notDeepEqual(j.image, base.image);
    assert.ok(j.tags!.includes('colour-jitter'));
    // a gray pixel comes out coloured for most transforms
    for (let p = 0; p < j.image.length; p += 3) if (Math.abs(j.image[p]! - j.image[p + 1]!) > 20 || Math.abs(j.image[p + 1]! - j.image[p + 2]!) > 20) { coloured++; break; }
  }
  assert.ok(coloured >= 8, `${coloured} of 12 jittered images have coloured pixels`);
  const half = Array.from({ length: 40 }, (_, i) => draw(withColourJitter(pretrainCorpus, 0.5), 6, i).tags!.includes('colour-jitter')).filter(Boolean).length;
  assert.ok(half > 10 && half < 30, `${half} of 40 at share 0.5`);
  assert.throws(() => withColourJitter(pretrainCorpus, 1.5), /share must be in \[0, 1\]/);
});
