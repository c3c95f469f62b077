// The dashboards in a real browser (Debian's chromium, driven by playwright-core), against real runs of the CLI:
// `fedsam simulate` for the federation page, `fedsam server` + `fedsam client --dashboard` for a site's own page.
// FEDSAM_UPDATE_SCREENSHOTS=1 writes the pictures the README shows (docs/dashboard.png, docs/site-dashboard.png).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdtemp } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext } from 'playwright-core';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHROMIUM = process.env.FEDSAM_CHROMIUM ?? '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM}: Debian's chromium is not installed (apt-get install chromium; .ci/run installs it), so the dashboard pages are not tested here`;
const UPDATE = process.env.FEDSAM_UPDATE_SCREENSHOTS === '1';

/** The flags that keep chromium off the network: every page here is on 127.0.0.1. */
async function browser(): Promise<BrowserContext> {
  return chromium.launchPersistentContext(await mkdtemp(join(tmpdir(), 'fedsam-chromium-')), {
    executablePath: CHROMIUM, headless: true, viewport: { width: 1280, height: 900 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

interface Proc { child: ChildProcess; lines: string[]; waitFor(re: RegExp, ms: number): Promise<RegExpExecArray>; exited: Promise<number | null> }

function fedsam(args: string[]): Proc {
  const child = spawn(process.execPath, ['--initial-old-space-size=64', 'bin/fedsam.mjs', '--log-format', 'json', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiters: Array<{ re: RegExp; resolve: (m: RegExpExecArray) => void }> = [];
  for (const s of [child.stdout!, child.stderr!]) {
    createInterface({ input: s }).on('line', (l) => {
      lines.push(l);
      for (const w of [...waiters]) {
        const m = w.re.exec(l);
        if (m) { waiters.splice(waiters.indexOf(w), 1); w.resolve(m); }
      }
    });
  }
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return {
    child, lines, exited,
    waitFor(re, ms) {
      const seen = lines.map((l) => re.exec(l)).find(Boolean);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no line matching ${re} within ${ms} ms; last lines:\n${lines.slice(-15).join('\n')}`)), ms);
        waiters.push({ re, resolve: (m) => { clearTimeout(t); resolve(m); } });
      });
    },
  };
}

/** The page fits the browser's width: a wide table scrolls inside its card instead of widening the page. */
async function assertFitsWidth(page: import('playwright-core').Page) {
  const { page: w, view } = await page.evaluate(() => ({ page: document.documentElement.scrollWidth, view: window.innerWidth }));
  assert.ok(w <= view, `the page is ${w} px wide in a ${view}-px window`);
}

async function stopAll(...procs: Proc[]) {
  for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGTERM');
  await Promise.all(procs.map((p) => p.exited));
}

test('federation page: a simulation followed live in chromium (state, sites, Dice curves, Ditto\'s personal Dice, bytes)', { skip, timeout: 600_000 }, async () => {
  const out = await mkdtemp(join(tmpdir(), 'fedsam-dash-'));
  const sim = fedsam(['simulate', '--rounds', '3', '--images-per-site', '12', '--ditto-lambda', '0.01', '--out', out, '--dashboard', '127.0.0.1:0']);
  const ctx = await browser();
  try {
    const url = (await sim.waitFor(/^dashboard: (http:\/\/127\.0\.0\.1:\d+\/)$/, 180_000))[1]!;
    const state = await (await fetch(`${url}api/state`)).json();
    assert.equal(typeof state.round, 'number');
    assert.ok(Array.isArray(state.rounds));
    assert.deepEqual(state.sites.map((s: { name: string }) => s.name), ['site-1', 'site-2', 'site-3']);
    for (const s of state.sites) assert.equal(typeof s.state, 'string');

    const page = await ctx.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    // (the event stream's reconnection attempts once the simulation has ended are expected)
    page.on('console', (m) => { if (m.type() === 'error' && !m.text().includes('ERR_CONNECTION_REFUSED')) errors.push(m.text()); });
    await page.goto(url);
    await page.waitForSelector('#sites tbody tr[data-site="site-3"]');
    // live: sites at work during a fit round, with their progress from the simulation's engines
    await page.waitForFunction(() => [...document.querySelectorAll('#sites .state')].some((e) => e.textContent === 'training'), null, { timeout: 180_000 });
    await page.waitForFunction(() => document.querySelectorAll('#sites .bar').length > 0, null, { timeout: 120_000 });
    // the picture: two rounds evaluated and the sites training the third, with their progress
    await page.waitForFunction(() => document.querySelectorAll('#rounds tbody tr').length >= 3 && document.body.dataset.round === '3'
      && [...document.querySelectorAll('#sites .state')].some((e) => e.textContent === 'training') && document.querySelectorAll('#sites .bar').length > 0, null, { timeout: 300_000 });
    await assertFitsWidth(page);
    const shot = join(out, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    await page.waitForFunction(() => document.body.dataset.phase === 'finished', null, { timeout: 300_000 });
    assert.equal(await sim.exited, 0, sim.lines.slice(-10).join('\n'));

    assert.deepEqual(await page.$$eval('#rounds tbody tr', (rows) => rows.map((r) => (r as HTMLElement).dataset.round)), ['0', '1', '2', '3']);
    // the sites' personal models (Ditto): a column of their mean Dice, empty before the first round trains them
    assert.deepEqual((await page.$$eval('#rounds thead th', (t) => t.map((e) => e.textContent))).slice(0, 3), ['round', 'mean Dice', 'personal models\' mean Dice']);
    const personal = await page.$$eval('#rounds tbody tr', (rows) => rows.map((r) => r.children[2]!.textContent));
    assert.equal(personal[0], '—');
    for (const v of personal.slice(1)) assert.match(v ?? '', /^0\.\d{3}$/);
    const series = await page.$$eval('#dice g.series', (g) => g.map((e) => (e as SVGGElement).dataset.series));
    assert.deepEqual(series, ['site-1', 'site-2', 'site-3', 'weighted mean', 'box baseline']);
    const mean = await page.$$eval('#dice g.series[data-series="weighted mean"] circle', (c) => c.length);
    assert.equal(mean, 4, 'one point per evaluated round (0..3)');
    assert.match(await page.textContent('#status') ?? '', /finished: 3 of 3 rounds/);
    assert.match(await page.textContent('#figures') ?? '', /MB/, 'bytes moved are shown');
    const aggBars = await page.$$eval('#agg rect', (r) => r.length);
    assert.equal(aggBars, 3, 'aggregation time of each fit round');
    assert.deepEqual(errors, []);
    if (UPDATE) await copyFile(shot, join(ROOT, 'docs', 'dashboard.png'));
  } finally {
    await ctx.close();
    await stopAll(sim);
  }
});

test('site page: the site\'s own overlays from the global model, its Ditto personal model\'s Dice; the server\'s page has none', { skip, timeout: 600_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fedsam-site-dash-'));
  const synth = fedsam(['synth', '--out', join(dir, 'data'), '--sites', '1', '--images-per-site', '12']);
  assert.equal(await synth.exited, 0);
  const token = 'site-dashboard-test-token';
  const sha = createHash('sha256').update(token).digest('hex');
  const server = fedsam(['server', '--listen', '127.0.0.1:0', '--base-model', 'fedsam-tiny', '--rounds', '2', '--min-available', '1', '--min-fit', '1',
    '--epochs', '2', '--lr', '0.003', '--ditto-lambda', '0.01', '--evaluate-initial', '--out-dir', join(dir, 'server'), '--site', `site-1:${sha}`, '--no-metrics',
    '--dashboard', '127.0.0.1:0']);
  const ctx = await browser();
  let client: Proc | undefined;
  try {
    const port = (await server.waitFor(/"event":"server_started".*"port":(\d+)/, 120_000))[1];
    const serverPage = JSON.parse((await server.waitFor(/^\{.*"event":"dashboard_started".*\}$/, 30_000))[0]).url as string;
    client = fedsam(['client', '--server', `127.0.0.1:${port}`, '--site', 'site-1', '--token', token, '--data', join(dir, 'data', 'site-1'),
      '--cache-dir', join(dir, 'cache'), '--state-dir', join(dir, 'state'), '--dashboard', '127.0.0.1:0']);
    const url = JSON.parse((await client.waitFor(/^\{.*"event":"dashboard_started".*\}$/, 180_000))[0]).url as string;
    const page = await ctx.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    // overlays of the global model after an evaluation, as real pictures
    await page.waitForFunction(() => {
      const imgs = [...document.querySelectorAll<HTMLImageElement>('#gallery img')];
      return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0) && Number(document.body.dataset.overlays) >= 1;
    }, null, { timeout: 300_000 });
    // images never reach the server: its page serves no pictures and its state carries none
    assert.equal((await fetch(`${serverPage}overlays/0.png`)).status, 404);
    const serverState = await (await fetch(`${serverPage}api/state`)).text();
    assert.doesNotMatch(serverState, /png|data:image|overlay/i);
    assert.match(serverState, /"name":"site-1"/);
    // the built-in model segments in box crops; the pictures show the whole 256-px image all the same
    const widths = await page.$$eval('#gallery img', (imgs) => imgs.map((i) => (i as HTMLImageElement).naturalWidth));
    assert.ok(widths.every((w) => w === 256), `overlay widths ${widths.join(', ')}`);
    const captions = await page.$$eval('#gallery figcaption', (c) => c.map((e) => e.textContent));
    assert.ok(captions.length >= 1 && captions.every((c) => /Dice \d\.\d{3}/.test(c ?? '')), captions.join(' | '));
    await assertFitsWidth(page);
    const shot = join(dir, 'site-dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    await page.waitForFunction(() => document.body.dataset.state === 'finished', null, { timeout: 300_000 });
    const points = await page.$$eval('#dice g.series[data-series="Dice"] circle', (c) => c.length);
    assert.equal(points, 3, 'the site\'s Dice of rounds 0, 1 and 2');
    const personal = await page.$$eval('#dice g.series[data-series="personal model"] circle', (c) => c.length);
    assert.equal(personal, 2, 'its personal model\'s Dice of rounds 1 and 2 (none before the first round trains it)');
    assert.match(await page.textContent('#figures') ?? '', /personal model \(Ditto\)/);
    assert.deepEqual(errors, []);
    assert.ok(await page.$$eval('#gallery img', (i) => i.every((e) => (e as HTMLImageElement).naturalWidth > 0)), 'the last pictures stay after the daemon ended');
    if (UPDATE) await copyFile(shot, join(ROOT, 'docs', 'site-dashboard.png'));
    assert.equal(await client.exited, 0, client.lines.slice(-10).join('\n'));
    assert.equal(await server.exited, 0);
    // at the end the daemon leaves its personal model as an HF folder in its state folder
    for (const f of ['config.json', 'model.safetensors', 'preprocessor_config.json']) assert.ok(existsSync(join(dir, 'state', 'personal-model', f)), f);
  } finally {
    await ctx.close();
    await stopAll(server, ...(client ? [client] : []));
  }
});
