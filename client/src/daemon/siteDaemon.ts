// The site daemon as `fedsam client` runs it: prepares the site's data and embeddings, then runs the federated loop
// (runClient) until the server says the training is over.
import { readFileSync } from 'node:fs';
import { runClient, FatalClientError } from './client.ts';
import { prepareSite } from '../engine/site.ts';
import { SamEngine } from '../engine/samEngine.ts';
import { logger } from '@fedsam/shared/log';
import { serveSite, type SiteDashboard } from '../dashboard/serveSite.ts';

export interface SiteDaemonOptions {
  server: string;
  site?: string;
  token?: string;
  tokenFile?: string;
  data: string;
  model?: string;
  cacheDir?: string;
  valSplit: number;
  seed: number;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tls?: boolean;
  uploadDtype?: 'F32' | 'F16';
  downloadDtype?: 'F32' | 'F16';
  quiet?: boolean;
  dashboard?: string;
  dashboardTlsCert?: string;
  dashboardTlsKey?: string;
  dashboardTokenFile?: string;
}

export async function runSiteDaemon(o: SiteDaemonOptions): Promise<void> {
  let token = o.token;
  if (!token && o.tokenFile) {
    try {
      token = readFileSync(o.tokenFile, 'utf8').trim();
    } catch (e) {
      throw new Error(`cannot read --token-file ${o.tokenFile}: ${(e as Error).message}`);
    }
  }
  if (!token) throw new Error('no site token: pass --token, --token-file, or set FEDSAM_TOKEN / FEDSAM_TOKEN_FILE');
  const log = logger('client'); // the daemon adds `site` to its events
  const site = await prepareSite({ model: o.model, data: o.data, valSplit: o.valSplit, seed: o.seed, cacheDir: o.cacheDir, quiet: o.quiet,
    log: (l) => log.info({ report: l }, 'dataset loaded') });
  log.info({ site: o.site, model: site.loaded.source, train: site.train.length, val: site.val.length, skipped: site.report.skipped.length }, 'site ready');
  let dash: SiteDashboard | undefined;
  if (o.dashboard) {
    dash = await serveSite({
      listen: o.dashboard, site: o.site ?? 'site', server: o.server, train: site.train.length, val: site.val, log,
      tls: o.dashboardTlsCert && o.dashboardTlsKey ? { cert: o.dashboardTlsCert, key: o.dashboardTlsKey } : undefined,
      token: o.dashboardTokenFile ? readFileSync(o.dashboardTokenFile, 'utf8').trim() : undefined,
    });
  }
  const engine = new SamEngine(site.loaded, site.cache, site.train, site.val, {
    quiet: true, log: (event, f) => log.info(f, event), onProgress: dash?.progress, onPrediction: dash?.prediction,
  });
  const tls = o.tlsCa || o.tlsCert ? { ca: o.tlsCa, cert: o.tlsCert, key: o.tlsKey } : !!o.tls;
  const handle = runClient({
    server: o.server, token, site: o.site, engine, logger: log, tls, handleSignals: true,
    uploadDtype: o.uploadDtype, downloadDtype: o.downloadDtype, onEvent: dash?.event,
  });
  try {
    const r = await handle.done;
    log.info({ reason: r.reason, rounds_trained: r.roundsTrained.length, rounds_evaluated: r.roundsEvaluated.length }, 'client finished');
  } catch (e) {
    if (e instanceof FatalClientError) throw new Error(`the server refused this site: ${e.message}`);
    throw e;
  } finally {
    await dash?.close();
    await engine.close();
    site.loaded.model.dispose();
  }
}
