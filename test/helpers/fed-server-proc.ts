// The aggregation server in its own process (for kill/--resume tests). argv[2]: config file (YAML/JSON).
// Prints {"event":"listening","port"} and {"event":"round","round"} lines on stdout.
import { destination, pino } from 'pino';
import { loadServerConfig } from '@fedsam/server/config';
import { runServer } from '@fedsam/server/server';

const print = (m: Record<string, unknown>) => process.stdout.write(JSON.stringify(m) + '\n');
const cfg = await loadServerConfig(process.argv[2]!);
const h = await runServer(cfg, { logger: pino({ level: process.env.FEDSAM_TEST_LOG ?? 'warn' }, destination(2)) });
print({ event: 'listening', port: h.port, round: h.coordinator.round });
h.coordinator.on('round', (r) => print({ event: 'round', round: r.round, version: r.fit?.global_version }));
process.once('SIGTERM', () => void h.stop('SIGTERM'));
process.on('SIGHUP', () => void h.reload().then(() => print({ event: 'reloaded' }), (e) => print({ event: 'reload_failed', error: String(e) })));
const res = await h.done;
print({ event: 'done', round: res.round, stopped: res.stopped });
process.exit(0);
