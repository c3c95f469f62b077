// A site's own page: its daemon's state, its Dice per round and overlays of its validation objects.
import { lineChart, legend } from './chart.js';
import { follow, ago, figures } from './live.js';

const $ = (id) => document.getElementById(id);
const f3 = (v) => (typeof v === 'number' ? v.toFixed(3) : '—');
let shownOverlays = '';

function render(s) {
  $('sub').textContent = `site ${s.site} · server ${s.server}`;
  $('state').textContent = s.state;
  $('state').className = `state ${s.state}`;
  $('status').textContent = [s.round !== null ? `round ${s.round}` : '', s.detail ?? '', `since ${ago(s.since)}`, s.last_error ? `last error: ${s.last_error}` : '']
    .filter(Boolean).join(' · ');
  $('task-bar').style.width = `${Math.round(100 * (s.progress ?? (s.state === 'connected' || s.state === 'finished' ? 1 : 0)))}%`;
  const last = s.rounds.at(-1);
  const personal = s.rounds.filter((r) => typeof r.personal_dice === 'number');
  const fig = [[f3(last?.dice), `Dice${last ? ` (round ${last.round})` : ''}`],
    ...(typeof last?.personal_dice === 'number' ? [[f3(last.personal_dice), 'personal model (Ditto)']] : []), [f3(last?.box_dice), 'box baseline'],
    [String(s.train_objects), 'training objects'], [String(s.val_objects), 'validation objects']];
  figures($('figures'), fig);
  $('refusals').textContent = s.refusals.map((r) => `update of round ${r.round} refused: ${r.message}`).join(' · ');
  const xMax = Math.max(1, ...s.rounds.map((r) => r.round));
  const series = [{ name: 'Dice', color: '#4e79a7', width: 2.5, points: s.rounds.filter((r) => r.dice !== null).map((r) => [r.round, r.dice]) }];
  // with Ditto (fit.ditto_lambda) the site also keeps a model of its own
  if (personal.length) series.push({ name: 'personal model', color: '#e15759', width: 2, points: personal.map((r) => [r.round, r.personal_dice]) });
  const box = last?.box_dice;
  if (typeof box === 'number') series.push({ name: 'box baseline', color: '#8c959f', dash: '6 4', dots: false, width: 1.5, points: [[0, box], [xMax, box]] });
  lineChart($('dice'), series, { xMin: 0, xMax, yMin: 0, yMax: 1, xLabel: 'round', yLabel: 'Dice', integerX: true });
  legend($('dice-legend'), series);
  const key = JSON.stringify(s.overlays);
  if (key !== shownOverlays) {
    shownOverlays = key;
    // all pictures are fetched into the page (blobs) before they replace the shown ones: the last set that could be
    // loaded stays, also when the daemon has ended
    Promise.all(s.overlays.items.map((o) => fetch(o.url).then((r) => (r.ok ? r.blob() : Promise.reject(new Error(r.statusText))))))
      .then((blobs) => {
        if (shownOverlays !== key) return;
        for (const img of $('gallery').querySelectorAll('img')) URL.revokeObjectURL(img.src);
        $('overlays-title').textContent = `Validation overlays · global model of round ${s.overlays.round}`;
        $('gallery').replaceChildren(...s.overlays.items.map((o, k) => {
          const fig = document.createElement('figure');
          const img = document.createElement('img');
          img.alt = `overlay of ${o.id}`;
          img.src = URL.createObjectURL(blobs[k]);
          const cap = document.createElement('figcaption');
          cap.textContent = `${o.id} · Dice ${o.dice.toFixed(3)}`;
          fig.append(img, cap);
          return fig;
        }));
        document.body.dataset.overlays = String(s.overlays.round);
      }, () => {});
  }
  document.body.dataset.state = s.state;
  document.body.dataset.round = String(s.round ?? '');
}

follow(render, (up) => {
  $('conn').textContent = up ? 'live' : 'connection lost: retrying…';
  $('conn').className = up ? 'conn' : 'conn off';
});
