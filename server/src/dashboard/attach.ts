// The federation page of a running server: its state follows the coordinator, the site registry and the transfers;
// the page itself is served only when the config asks for it (dashboard.listen).
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { startDashboard, type DashboardHandle } from '@fedsam/shared/web/dashboardServer';
import type { ClientRegistry } from '../clients.ts';
import type { ServerConfig } from '../config.ts';
import type { Coordinator } from '../coordinator.ts';
import type { ServerMetrics } from '../metrics.ts';
import { FederationView } from './federationView.ts';

export function followFederation(coordinator: Coordinator, registry: ClientRegistry, metrics: ServerMetrics, cfg: ServerConfig): FederationView {
  const view = new FederationView({
    strategy: coordinator.strategy.name, totalRounds: cfg.rounds, sites: cfg.sites.map((s) => s.name), lastSeen: (s) => registry.lastSeen(s),
  });
  registry.on('joined', (site) => view.siteJoined(site));
  registry.on('lost', (site, reason) => view.siteLost(site, reason));
  metrics.on('transfer', (site, direction, bytes) => (direction === 'out' ? view.downloaded(site, bytes) : view.transferred('in', bytes)));
  coordinator.on('phase', (kind, round) => view.phaseStarted(kind, round));
  coordinator.on('task_sent', (site, kind, round) => view.taskSent(site, kind, round));
  coordinator.on('upload_started', (site, round) => view.uploadStarted(site, round));
  coordinator.on('update_accepted', (site, round) => view.updateAccepted(site, round));
  coordinator.on('refused', (site, round, reason, message) => view.refused(site, round, reason, message));
  coordinator.on('dropped', (site, round, reason) => view.dropped(site, round, reason));
  coordinator.on('evaluation_accepted', (site, round, m) => view.evaluationAccepted(site, round, m));
  coordinator.on('round', (rec) => view.roundCompleted(rec));
  coordinator.on('evaluated', (rec) => view.evaluated(rec));
  coordinator.on('finished', () => view.finished());
  return view;
}

const PAGE = new URL('./page/', import.meta.url);

export async function serveFederation(view: FederationView, cfg: NonNullable<ServerConfig['dashboard']>, serverTls: ServerConfig['tls'], log: Logger): Promise<DashboardHandle> {
  const tlsCert = cfg.tls_cert ?? serverTls?.cert;
  const tlsKey = cfg.tls_key ?? serverTls?.key;
  const token = cfg.token_file ? (await readFile(cfg.token_file, 'utf8')).trim() : undefined;
  const dash = await startDashboard({
    listen: cfg.listen, assets: [PAGE], state: () => view.snapshot(), token,
    tls: tlsCert && tlsKey ? { cert: tlsCert, key: tlsKey } : undefined,
  });
  view.on('change', () => dash.notify());
  log.info({ event: 'dashboard_started', url: dash.url }, `dashboard: ${dash.url}`);
  return dash;
}
