import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { boxBaselineDice, hashFile, loadDataset, synthesize } from '../client/src/data/index.ts';

const small = { sites: 2, imagesPerSite: 8, size: 128 };

async function tmp(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'fedsam-synth-'));
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

async function digest(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const site of (await readdir(dir)).filter((f) => f.startsWith('site-')).sort()) {
    for (const sub of ['images', 'masks']) {
      for (const f of (await readdir(join(dir, site, sub))).sort()) out.push(`${site}/${sub}/${f}:${await hashFile(join(dir, site, sub, f))}`);
    }
  }
  return out;
}

test('synthesize writes layout (a) per site, loadable, box baseline <= 0.6 (IID and non-IID)', async (t) => {
  const d = await tmp(t);
  for (const nonIid of [false, true]) {
    const out = join(d, nonIid ? 'noniid' : 'iid');
    const lines: string[] = [];
    const r = await synthesize({ out, ...small, nonIid, seed: 3, log: (l) => lines.push(l) });
    assert.equal(r.sites.length, 2);
    assert.ok(r.boxDice > 0.2 && r.boxDice <= 0.6, `box baseline ${r.boxDice}`);
    assert.ok(lines.at(-1)!.includes('box-baseline Dice'));
    const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8')) as { boxDice: number };
    assert.equal(summary.boxDice, r.boxDice);
    assert.match(await readFile(join(out, 'README.txt'), 'utf8'), /box-baseline Dice/);
    let total = 0;
    for (const site of r.sites) {
      assert.equal((await readdir(join(site.dir, 'images'))).length, 8);
      const { samples, report } = await loadDataset(site.dir);
      assert.deepEqual(report.skipped, []);
      assert.equal(samples.length, site.objects);
      assert.ok(report.images === 8 && report.groups === 8);
      assert.ok(Math.abs((await boxBaselineDice(samples)) - site.boxDice) < 1e-9);
      total += samples.length;
      const img = await samples[0]!.loadImage();
      assert.equal(img.width, 128);
      // object is visible: mean intensity inside differs from the ring around its box
      const m = await samples[0]!.loadMask();
      let inside = 0, nIn = 0, outside = 0, nOut = 0;
      for (let i = 0; i < m.length; i++) {
        if (m[i]) { inside += img.data[3 * i]!; nIn++; } else { outside += img.data[3 * i]!; nOut++; }
      }
      assert.ok(Math.abs(inside / nIn - outside / nOut) > 20, `contrast ${inside / nIn} vs ${outside / nOut}`);
    }
    assert.ok(total > 8);
    if (nonIid) assert.notDeepEqual(r.sites[0]!.style, r.sites[1]!.style);
    else assert.deepEqual(r.sites[0]!.style, r.sites[1]!.style);
  }
});

test('synthesize is deterministic by seed and re-runs cleanly', async (t) => {
  const d = await tmp(t);
  const o = { ...small, sites: 2, imagesPerSite: 3, nonIid: true };
  const a = await synthesize({ out: join(d, 'a'), ...o, seed: 11 });
  const b = await synthesize({ out: join(d, 'b'), ...o, seed: 11 });
  await synthesize({ out: join(d, 'c'), ...o, seed: 12 });
  assert.deepEqual(await digest(join(d, 'a')), await digest(join(d, 'b')));
  assert.notDeepEqual(await digest(join(d, 'a')), await digest(join(d, 'c')));
  assert.equal(a.boxDice, b.boxDice);
  // re-run into the same folder with fewer sites: old site folders are removed
  await synthesize({ out: join(d, 'a'), ...o, sites: 1, seed: 11 });
  assert.deepEqual((await readdir(join(d, 'a'))).filter((f) => f.startsWith('site-')), ['site-1']);
});
