// What every dashboard page needs besides charts: the state stream and the formatting of times and sizes.

/** "3 s ago", "2 min ago" */
export function ago(iso, now = Date.now()) {
  if (!iso) return '—';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  return s < 90 ? `${s} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
}

export function bytes(n) {
  if (!n) return '0 B';
  const u = ['B', 'kB', 'MB', 'GB', 'TB'];
  const i = Math.min(u.length - 1, Math.floor(Math.log10(n) / 3));
  return `${(n / 10 ** (3 * i)).toFixed(i ? 1 : 0)} ${u[i]}`;
}

/** Keep the page in step with the server: state events, and a note while the stream is away. */
export function follow(onState, onConnection) {
  const es = new EventSource('/api/events');
  es.addEventListener('state', (e) => onState(JSON.parse(e.data)));
  es.addEventListener('open', () => onConnection(true));
  es.addEventListener('error', () => onConnection(false));
  return es;
}

/** Headline figures: a big value over a small caption each. */
export function figures(container, pairs) {
  container.replaceChildren(...pairs.map(([value, caption]) => {
    const d = document.createElement('div');
    const b = document.createElement('b');
    const span = document.createElement('span');
    b.textContent = value;
    span.textContent = caption;
    d.append(b, span);
    return d;
  }));
}
