// `fedsam simulate --compare --report FILE`: the comparison table as JSON, as a user runs it (a real child process).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { reportRow, type CompareReport, type ReportRow } from '@fedsam/cli/compareReport';
import { runFedsam as fedsam } from './helpers/fed-harness.ts';

test('reportRow: the mean is weighted by the sites\' object counts', () => {
  const r = reportRow(['a', 'b'], { a: 0.5, b: 0.2 }, { a: 3, b: 1 });
  assert.deepEqual(r.sites, { a: { dice: 0.5, num_examples: 3 }, b: { dice: 0.2, num_examples: 1 } });
  assert.ok(Math.abs(r.mean_dice - (0.5 * 3 + 0.2) / 4) < 1e-12);
  assert.throws(() => reportRow(['a', 'c'], { a: 0.5 }, { a: 3 }), /no Dice or count for c/);
});

test('simulate --compare --report writes every row with per-site Dice and counts (Ditto\'s personal models too); the table prints the same means', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-report-'));
  const file = join(dir, 'report.json');
  const r = await fedsam(['simulate', '--sites', '2', '--rounds', '1', '--epochs', '1', '--images-per-site', '3', '--image-size', '96', '--non-iid',
    '--compare', '--report', file, '--out', join(dir, 'out'), '--history', join(dir, 'h.json'), '--ditto-lambda', '0.01', '--no-dashboard', '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(await readFile(file, 'utf8')) as CompareReport;
  assert.deepEqual(Object.keys(report).sort(), ['box_baseline', 'centralized', 'federated', 'federated_ditto', 'federated_personalized', 'local_only']);
  const history = JSON.parse(await readFile(join(dir, 'h.json'), 'utf8')) as Array<{ mean_dice: number; sites: Record<string, { num_examples: number; personal_dice: number }> }>;
  const last = history[history.length - 1]!;
  for (const [row, R] of Object.entries(report) as Array<[keyof CompareReport, ReportRow]>) {
    assert.deepEqual(Object.keys(R.sites).sort(), ['site-1', 'site-2'], row);
    let s = 0, n = 0;
    for (const [site, v] of Object.entries(R.sites)) {
      assert.ok(v.dice >= 0 && v.dice <= 1, `${row} ${site} dice ${v.dice}`);
      assert.equal(v.num_examples, last.sites[site]!.num_examples, `${row} ${site}: Dice over the site's validation objects`);
      s += v.dice * v.num_examples;
      n += v.num_examples;
    }
    assert.ok(Math.abs(R.mean_dice - s / n) < 1e-12, `${row}: weighted mean`);
    // the table's last column prints the same mean, rounded to the digits it shows
    const label = { box_baseline: 'box baseline', local_only: 'local-only', federated: 'federated (', centralized: 'centralized', federated_personalized: 'federated, each', federated_ditto: 'federated + Ditto' }[row];
    const line = r.stdout.split('\n').find((l) => l.startsWith(label))!;
    assert.ok(line, `table row ${label}`);
    const printed = line.trim().split(/\s+/).pop()!;
    const digits = printed.split('.')[1]?.length ?? 0;
    assert.ok(digits >= 3 && Math.abs(Number(printed) - R.mean_dice) <= 0.5 * 10 ** -digits + 1e-12, `${row} in the table: ${printed} vs ${R.mean_dice}`);
  }
  assert.ok(Math.abs(report.federated.mean_dice - last.mean_dice) < 1e-9, 'federated = the last round of the history');
  for (const site of ['site-1', 'site-2']) assert.equal(report.federated_ditto!.sites[site]!.dice, last.sites[site]!.personal_dice, `${site}: the personal model's Dice as the last round measured it`);
});

test('simulate --report without --compare is a usage error', async () => {
  const r = await fedsam(['simulate', '--report', join(tmpdir(), 'never.json')]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--report needs --compare/);
});
