// The federation page: renders the server's state (GET /api/state, pushed again on every change).
import { lineChart, barChart, colourOf, legend } from './chart.js';
import { follow, ago, bytes, figures } from './live.js';

const $ = (id) => document.getElementById(id);
const f3 = (v) => (typeof v === 'number' ? v.toFixed(3) : '—');
const PHASE = { waiting: 'waiting for sites', fit: 'training', evaluate: 'evaluating', finished: 'finished', stopped: 'stopped' };
let state;

function cell(text, cls) {
  const td = document.createElement('td');
  if (cls) td.className = cls;
  if (text instanceof Node) td.append(text); else td.textContent = text;
  return td;
}
function badge(s) {
  const b = document.createElement('span');
  b.className = `state ${s}`;
  b.textContent = s;
  return b;
}
function progress(fraction, label) {
  const wrap = document.createElement('span');
  if (fraction === null || fraction === undefined) { wrap.textContent = label ?? ''; wrap.className = 'muted'; return wrap; }
  const bar = document.createElement('span');
  bar.className = 'bar';
  const fill = document.createElement('span');
  fill.style.width = `${Math.round(fraction * 100)}%`;
  bar.append(fill);
  wrap.append(bar, ` ${label ?? `${Math.round(fraction * 100)}%`}`);
  return wrap;
}

function renderHeader(s) {
  $('sub').textContent = `${s.title ?? 'federation'} · ${s.strategy} · ${s.sites.length} sites`;
  const inRound = s.phase === 'fit' || s.phase === 'evaluate';
  const busy = s.sites.filter((x) => x.round === s.round && ['training', 'uploading', 'evaluating', 'downloading'].includes(x.state)).length;
  $('status').textContent = s.phase === 'finished'
    ? `finished: ${s.completed_round} of ${s.total_rounds} rounds`
    : `round ${s.round} of ${s.total_rounds} · ${PHASE[s.phase] ?? s.phase}${inRound ? ` · ${busy} site${busy === 1 ? '' : 's'} busy` : ''}`;
  $('round-bar').style.width = `${Math.round((100 * s.completed_round) / Math.max(1, s.total_rounds))}%`;
  const last = [...s.rounds].reverse().find((r) => typeof r.mean_dice === 'number');
  const fig = [
    [f3(last?.mean_dice), `weighted mean Dice${last ? ` (round ${last.round})` : ''}`],
    [f3(s.box_baseline), 'box baseline'],
    [bytes(s.bytes.out), 'sent to sites'],
    [bytes(s.bytes.in), 'received from sites'],
    [s.elapsed_seconds !== undefined ? `${Math.round(s.elapsed_seconds)} s` : '—', 'elapsed'],
  ];
  figures($('figures'), fig);
}

function renderSites(s) {
  const body = $('sites').tBodies[0];
  body.replaceChildren(...s.sites.map((x) => {
    const tr = document.createElement('tr');
    tr.dataset.site = x.name;
    tr.append(
      cell(x.name),
      cell(badge(x.state), 'text'),
      cell(progress(x.progress, x.detail ?? (x.since && ['training', 'uploading', 'evaluating', 'downloading'].includes(x.state) ? `for ${ago(x.since).replace(' ago', '')}` : '')), 'text'),
      cell(ago(x.last_heartbeat), 'hb'),
      cell(String(x.rounds_trained ?? 0)),
      cell(f3(x.dice)),
      cell(x.refusals.length ? x.refusals.slice(-3).map((r) => `round ${r.round}: ${r.reason}${r.message ? ` (${r.message})` : ''}`).join('; ') : '—', 'refusals'),
    );
    tr.lastChild.title = x.refusals.map((r) => `${r.at} round ${r.round}: ${r.reason} ${r.message ?? ''}`).join('\n');
    return tr;
  }));
}

function renderDice(s) {
  const names = s.sites.map((x) => x.name);
  const evaluated = s.rounds.filter((r) => typeof r.mean_dice === 'number');
  const series = names.map((n) => ({
    name: n, color: colourOf(names, n), width: 1.5,
    points: evaluated.filter((r) => typeof r.sites[n]?.dice === 'number').map((r) => [r.round, r.sites[n].dice]),
  }));
  series.push({ name: 'weighted mean', color: '#1f2328', width: 3, points: evaluated.map((r) => [r.round, r.mean_dice]) });
  if (typeof s.box_baseline === 'number') {
    series.push({ name: 'box baseline', color: '#8c959f', width: 1.5, dash: '6 4', dots: false, points: [[0, s.box_baseline], [Math.max(1, s.total_rounds), s.box_baseline]] });
  }
  lineChart($('dice'), series, { xMin: 0, xMax: Math.max(1, s.total_rounds), yMin: 0, yMax: 1, xLabel: 'round', yLabel: 'Dice', integerX: true });
  legend($('dice-legend'), series);
}

function renderRounds(s) {
  const names = s.sites.map((x) => x.name);
  // with Ditto (fit.ditto_lambda) the sites also report their personal models' Dice
  const personal = s.rounds.some((r) => typeof r.mean_personal_dice === 'number');
  const head = $('rounds').tHead;
  head.replaceChildren(document.createElement('tr'));
  for (const h of ['round', 'mean Dice', ...(personal ? ['personal models\' mean Dice'] : []), ...names, 'aggregation', 'round time', 'moved']) {
    const th = document.createElement('th');
    th.textContent = h;
    head.rows[0].append(th);
  }
  $('rounds').tBodies[0].replaceChildren(...s.rounds.map((r) => {
    const tr = document.createElement('tr');
    tr.dataset.round = String(r.round);
    tr.append(
      cell(String(r.round)), cell(f3(r.mean_dice)), ...(personal ? [cell(f3(r.mean_personal_dice))] : []), ...names.map((n) => cell(f3(r.sites[n]?.dice))),
      cell(typeof r.aggregation_seconds === 'number' ? `${(r.aggregation_seconds * 1000).toFixed(1)} ms` : '—'),
      cell(typeof r.duration_seconds === 'number' ? `${r.duration_seconds.toFixed(1)} s` : '—'),
      cell(bytes((r.bytes_in ?? 0) + (r.bytes_out ?? 0))),
    );
    return tr;
  }));
  const fits = s.rounds.filter((r) => typeof r.aggregation_seconds === 'number');
  barChart($('agg'), fits.map((r) => [r.round, r.aggregation_seconds * 1000]), { format: (v) => v.toFixed(v < 10 ? 1 : 0) });
  barChart($('moved'), fits.map((r) => [r.round, ((r.bytes_in ?? 0) + (r.bytes_out ?? 0)) / 1e6]), { color: '#59a14f', format: (v) => v.toFixed(0) });
}

function render(s) {
  state = s;
  renderHeader(s);
  renderSites(s);
  renderDice(s);
  renderRounds(s);
  document.body.dataset.round = String(s.round);
  document.body.dataset.phase = s.phase;
}

follow(render, (up) => {
  $('conn').textContent = up ? 'live' : state?.phase === 'finished' ? 'server has stopped' : 'connection lost: retrying…';
  $('conn').className = up ? 'conn' : 'conn off';
});
// heartbeat ages move on between events
setInterval(() => {
  if (!state) return;
  for (const x of state.sites) {
    const td = document.querySelector(`tr[data-site="${CSS.escape(x.name)}"] td.hb`);
    if (td) td.textContent = ago(x.last_heartbeat);
  }
}, 1000);
