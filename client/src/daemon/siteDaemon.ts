// The site daemon as `fedsam client` runs it: prepares the site's data and embeddings, then runs the federated loop
// (runClient) until the server says the training is over. Its settings are a SiteConfig (siteConfig.ts: site.yaml
// and flags, validated).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runClient, FatalClientError } from './client.ts';
import { prepareSite } from '../engine/site.ts';
import { SamEngine } from '../engine/samEngine.ts';
import { logger } from '@fedsam/shared/log';
import { serveSite, type SiteDashboard } from '../dashboard/serveSite.ts';
import { siteStateDir, type SiteConfig } from './siteConfig.ts';

export async function runSiteDaemon(c: SiteConfig, o: { quiet?: boolean } = {}): Promise<void> {
  if (!c.data) throw new Error('no dataset: pass --data (or set data: in the site config / FEDSAM_DATA)');
  let token = c.token ?? undefined;
  if (!token && c.token_file) {
    try {
      token = readFileSync(c.token_file, 'utf8').trim();
    } catch (e) {
      throw new Error(`cannot read token file ${c.token_file}: ${(e as Error).message}`);
    }
  }
  const log = logger('client'); // the daemon adds `site` to its events
  const site = await prepareSite({ model: c.model ?? undefined, data: c.data, valSplit: c.val_split, seed: c.seed, cacheDir: c.cache_dir ?? undefined, quiet: o.quiet,
    log: (l) => log.info({ report: l }, 'dataset loaded') });
  log.info({ site: c.site, model: site.loaded.source, train: site.train.length, val: site.val.length, skipped: site.report.skipped.length }, 'site ready');
  let dash: SiteDashboard | undefined;
  if (c.dashboard) {
    const d = c.dashboard;
    dash = await serveSite({
      listen: d.listen, site: c.site ?? 'site', server: c.server, train: site.train.length, val: site.val, log,
      tls: d.tls_cert && d.tls_key ? { cert: d.tls_cert, key: d.tls_key } : undefined,
      token: d.token_file ? readFileSync(d.token_file, 'utf8').trim() : undefined,
    });
  }
  const engine = new SamEngine(site.loaded, site.cache, site.train, site.val, {
    quiet: true, log: (event, f) => log.info(f, event), onProgress: dash?.progress, onPrediction: dash?.prediction, stateDir: siteStateDir(c),
  });
  const tls = c.tls ? { ca: c.tls.ca ?? undefined, cert: c.tls.cert ?? undefined, key: c.tls.key ?? undefined } : false;
  const handle = runClient({
    server: c.server, token, site: c.site ?? undefined, engine, logger: log, tls, handleSignals: true,
    uploadDtype: c.upload_dtype, downloadDtype: c.download_dtype, fitTimeoutMs: c.fit_timeout_s ? c.fit_timeout_s * 1000 : undefined, onEvent: dash?.event,
  });
  try {
    const r = await handle.done;
    log.info({ reason: r.reason, rounds_trained: r.roundsTrained.length, rounds_evaluated: r.roundsEvaluated.length }, 'client finished');
    // with Ditto, the site's own model is ready to use: frozen encoders + its personal decoder, as an HF folder
    const personalDir = join(siteStateDir(c), 'personal-model');
    if (r.reason === 'shutdown' && await engine.savePersonalModel(personalDir)) {
      log.info({ event: 'personal_model_saved', dir: personalDir }, `the site's personal model (Ditto) is in ${personalDir}`);
    }
  } catch (e) {
    if (e instanceof FatalClientError) throw new Error(`the server refused this site: ${e.message}`);
    throw e;
  } finally {
    await dash?.close();
    await engine.close();
    site.loaded.model.dispose();
  }
}
