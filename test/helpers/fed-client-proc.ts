// A site daemon in its own process (for kill tests). argv[2]: JSON {server, site, token, engine: FakeEngineOptions}.
// Prints one JSON line per client event on stdout.
import { destination, pino } from 'pino';
import { runClient } from '@fedsam/client/daemon/client';
import { fakeEngine, type FakeEngineOptions } from './fake-engine.ts';

const o = JSON.parse(process.argv[2]!) as { server: string; site: string; token: string; engine: FakeEngineOptions };
const print = (m: Record<string, unknown>) => process.stdout.write(JSON.stringify(m) + '\n');
const h = runClient({
  server: o.server,
  site: o.site,
  token: o.token,
  engine: fakeEngine(o.engine),
  logger: pino({ level: 'warn' }, destination(2)),
  backoff: { initialMs: 50, maxMs: 500 },
  handleSignals: true,
  onEvent: (e) => print(e.type === 'task' ? { event: 'task', kind: e.task.kind, round: e.task.round } : { event: e.type }),
});
print({ event: 'started', pid: process.pid });
h.done.then(
  (r) => {
    print({ event: 'done', reason: r.reason });
    process.exit(0);
  },
  (e) => {
    print({ event: 'fatal', error: String(e) });
    process.exit(1);
  },
);
