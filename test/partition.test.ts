// Splitting one dataset across simulated sites: whole groups per site, disjoint, complete; non-IID by object size.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { partitionSamples } from '@fedsam/client/engine/site';
import type { Sample } from '@fedsam/client/data/types';

const samples = Array.from({ length: 30 }, (_, i) => ({ id: `s${i}`, group: `g${i % 10}`, area: (i % 10) * 100 + 5 } as unknown as Sample));

for (const nonIid of [false, true]) {
  test(`partition ${nonIid ? 'non-IID' : 'IID'}: disjoint whole groups covering every sample`, () => {
    const parts = [0, 1, 2].map((index) => partitionSamples(samples, { sites: 3, index, seed: 7, nonIid }));
    assert.equal(parts.reduce((a, p) => a + p.length, 0), samples.length);
    const groupsOf = parts.map((p) => new Set(p.map((s) => s.group)));
    for (let a = 0; a < 3; a++) for (let b = a + 1; b < 3; b++) for (const g of groupsOf[a]) assert.ok(!groupsOf[b].has(g), `${g} on two sites`);
    for (const p of parts) assert.ok(p.length > 0);
    if (nonIid) {
      const meanArea = parts.map((p) => p.reduce((x, s) => x + s.area, 0) / p.length);
      assert.ok(meanArea[0] < meanArea[1] && meanArea[1] < meanArea[2], `object size rises across sites: ${meanArea}`);
    }
  });
}
