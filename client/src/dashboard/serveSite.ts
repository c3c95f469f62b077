// `fedsam client --dashboard HOST:PORT`: the site's own page. Its state follows the daemon's events and the local
// training's steps; after each evaluation the first validation objects are drawn with the global model's prediction.
import type { Logger } from 'pino';
import { startDashboard, type DashboardHandle } from '@fedsam/shared/web/dashboardServer';
import type { ClientEvent } from '../daemon/client.ts';
import type { EngineItem } from '../engine/trainer.ts';
import type { FitProgress } from '../engine/localEngine.ts';
import { diceOf, renderOverlay, type Overlay } from './overlays.ts';
import { SiteView } from './siteView.ts';
import { inWholeImage } from '../data/cropSample.ts';

const PAGE = new URL('./page/', import.meta.url);

export interface SiteDashboardOptions {
  listen: string;
  site: string;
  server: string;
  train: number;
  val: readonly EngineItem[];
  tls?: { cert: string; key: string };
  token?: string;
  /** Validation objects drawn after each evaluation. */
  overlays?: number;
  log: Logger;
}

export interface SiteDashboard {
  url: string;
  /** runClient's onEvent. */
  event(e: ClientEvent): void;
  /** SamEngine's onProgress. */
  progress(p: FitProgress): void;
  /** SamEngine's onPrediction (during evaluations). */
  prediction(item: EngineItem, mask: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

export async function serveSite(o: SiteDashboardOptions): Promise<SiteDashboard> {
  let dash: DashboardHandle | undefined;
  const view = new SiteView({ site: o.site, server: o.server, trainObjects: o.train, valObjects: o.val.length }, () => dash?.notify());
  const shown = new Map(o.val.slice(0, o.overlays ?? 8).map((it, i) => [it, i]));
  let pending: Overlay[] = [];
  let evaluatingRound: number | null = null;
  dash = await startDashboard({
    listen: o.listen, assets: [PAGE], state: () => view.snapshot(), tls: o.tls, token: o.token,
    prefixRoutes: {
      '/overlays/': (_req, res, url) => {
        const png = view.overlayPng(Number(/^\/overlays\/(\d+)\.png$/.exec(url.pathname)?.[1] ?? NaN));
        if (!png) { res.writeHead(404); res.end(); return; }
        res.writeHead(200, { 'content-type': 'image/png', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
        res.end(png);
      },
    },
  });
  o.log.info({ event: 'dashboard_started', url: dash.url }, `site dashboard: ${dash.url}`);
  return {
    url: dash.url,
    event(e) {
      if (e.type === 'task' && (e.task.kind === 'evaluate' || e.task.evaluate)) {
        evaluatingRound = e.task.round;
        pending = [];
      }
      if (e.type === 'evaluated' && evaluatingRound === e.round && pending.length) view.setOverlays(e.round, pending.sort((a, b) => a.index - b.index));
      view.event(e);
    },
    progress: (p) => view.progress(p),
    async prediction(item, mask) {
      const index = shown.get(item);
      if (index === undefined || evaluatingRound === null) return;
      try {
        const whole = inWholeImage(item.sample, mask, item.sample.box); // a box crop is shown in its whole image
        const [image, truth] = await Promise.all([whole.sample.loadImage(), whole.sample.loadMask()]);
        pending.push({ index, id: item.sample.id, round: evaluatingRound, dice: diceOf(whole.pred, truth), png: await renderOverlay(image, truth, whole.pred, whole.box) });
      } catch (e) {
        o.log.warn({ event: 'overlay_failed', site: o.site, err: (e as Error).message }, 'could not draw an overlay');
      }
    },
    close: () => dash!.close(),
  };
}
