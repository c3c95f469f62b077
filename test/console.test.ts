// The console for people: human-readable log lines, the live block at the bottom of a terminal, and what
// `fedsam simulate` keeps in it (the round table and the sites' progress).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { humanLine } from '@fedsam/shared/console/humanLog';
import { LiveRegion } from '@fedsam/shared/console/liveRegion';
import { truncateVisible, visibleLength } from '@fedsam/shared/console/color';
import { FederationView } from '@fedsam/server/dashboard/federationView';
import { consoleLines } from '@fedsam/cli/simulateConsole';

test('log lines for people: time, level, site, round, message, the rest as key=value', () => {
  const line = humanLine({ level: 30, time: '2026-01-02T03:04:05.000Z', component: 'server', event: 'update_accepted', site: 'site-2', round: 3,
    num_examples: 54, metrics: { train_loss: 0.98765432 }, task_id: 'fit-r3', msg: 'update accepted' }, { colour: false });
  assert.match(line, /^\d\d:\d\d:\d\d INFO  site-2  r3  update accepted num_examples=54 train_loss=0\.9877$/);
  const warn = humanLine({ level: 40, time: Date.now(), component: 'client', msg: 'connection lost', err: 'UNAVAILABLE: no connection', retry_in_ms: 500 }, { colour: true });
  assert.match(warn, /\x1b\[33mWARN \x1b\[39m/, 'warnings in yellow');
  assert.match(warn.replace(/\x1b\[[0-9;]*m/g, ''), /WARN  client      connection lost: UNAVAILABLE: no connection retry_in_ms=500$/);
});

test('truncation counts visible columns, not escapes', () => {
  const s = `\x1b[32mgreen\x1b[39m and more text`;
  assert.equal(visibleLength(s), 19);
  const t = truncateVisible(s, 10);
  assert.equal(visibleLength(t), 10);
  assert.ok(t.startsWith('\x1b[32mgreen'));
});

/** A terminal that keeps what was written to it. */
function fakeTty(columns = 60, rows = 20) {
  const out: string[] = [];
  return { out, stream: { isTTY: true, columns, rows, write: (s: string) => { out.push(s); return true; } } as unknown as NodeJS.WriteStream };
}

test('live block: lines print above it, it is redrawn in place, and stays at the end', async () => {
  const { out, stream } = fakeTty();
  const r = new LiveRegion(stream, 1);
  r.set(['table', 'row 1']);
  await new Promise((res) => setTimeout(res, 10));
  assert.equal(out.join(''), 'table\nrow 1\n');
  out.length = 0;
  r.print('a log line');
  // up two lines, clear to the end, the log line, then the block again
  assert.equal(out.join(''), '\x1b[2F\x1b[0Ja log line\ntable\nrow 1\n');
  out.length = 0;
  r.set(['table', 'row 1', 'row 2']);
  r.close();
  assert.equal(out.join(''), '\x1b[2F\x1b[0Jtable\nrow 1\nrow 2\n');
  out.length = 0;
  r.print('after');
  assert.equal(out.join(''), 'after\n', 'a closed block is left alone');
  // not a terminal: nothing is drawn, lines pass through
  const plain: string[] = [];
  const p = new LiveRegion({ isTTY: false, write: (s: string) => plain.push(s) } as unknown as NodeJS.WriteStream);
  p.set(['x']);
  p.print('line');
  p.close();
  assert.deepEqual(plain, ['line\n']);
});

test('simulate on a terminal: the round table and the sites\' progress in a few lines', () => {
  const names = ['site-1', 'site-2', 'site-3'];
  const v = new FederationView({ strategy: 'fedavg', totalRounds: 6, sites: names, now: () => 0 });
  for (const n of names) v.siteJoined(n);
  v.evaluated({ round: 0, evaluate: { sampled: names, failed: {}, num_examples: 30, metrics: { dice: 0.03, box_dice: 0.44 }, duration_seconds: 1, global_version: 'v',
    sites: Object.fromEntries(names.map((n) => [n, { num_examples: 10, metrics: { dice: 0.03 } }])) } });
  v.phaseStarted('fit', 1);
  v.taskSent('site-1', 'fit', 1);
  v.downloaded('site-1', 100);
  v.progress('site-1', 0.5, 'epoch 1/2');
  v.refused('site-3', 1, 'bad_shape', 'shape');
  const headers = ['round', ...names.map((n) => `${n} Dice`), 'weighted mean Dice', 'box baseline', 'elapsed s'];
  const lines = consoleLines(v.snapshot(), { names, headers, boxMean: 0.44, colour: false, elapsedOf: () => 12.5, t0: 0, now: 30_000 });
  assert.equal(lines.length, 3 + 2 + 3, 'header, rule, one row; blank + round line; one line per site');
  assert.match(lines[2]!, /^0 +0\.0300 +0\.0300 +0\.0300 +0\.0300 +0\.4400 +12\.5000$/);
  assert.match(lines[4]!, /^round 1 of 6  \[░{24}\]  training  30 s$/);
  assert.match(lines[5]!, /^ {2}site-1 +training +\[█{10}░{10}\] +50% +epoch 1\/2$/);
  assert.match(lines[7]!, /site-3 +connected .*1 refused \(last: bad_shape\)/);
});
