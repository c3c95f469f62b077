// What a site's own page shows (GET /api/state): its connection and task, its Dice per round, and overlays of its
// validation objects from the current global model (served as PNGs by the site's dashboard, never sent anywhere).
import type { ClientEvent } from '../daemon/client.ts';
import type { FitProgress } from '../engine/localEngine.ts';
import type { Overlay } from './overlays.ts';

export type SiteDaemonState = 'starting' | 'connecting' | 'connected' | 'downloading' | 'training' | 'uploading' | 'evaluating' | 'reconnecting' | 'finished';

export interface SiteDashboardState {
  kind: 'site';
  site: string;
  server: string;
  state: SiteDaemonState;
  round: number | null;
  progress: number | null;
  detail: string | null;
  since: string;
  train_objects: number;
  val_objects: number;
  /** The site's evaluation of each global model it was given. */
  /** personal_dice: the site's Ditto personal model (fit.ditto_lambda), null without one. */
  rounds: Array<{ round: number; dice: number | null; iou: number | null; box_dice: number | null; personal_dice: number | null }>;
  refusals: Array<{ round: number; message: string; at: string }>;
  last_error: string | null;
  overlays: { round: number | null; items: Array<{ index: number; id: string; dice: number; url: string }> };
}

export class SiteView {
  private s: SiteDashboardState;
  private overlayPngs = new Map<number, Buffer>();

  constructor(o: { site: string; server: string; trainObjects: number; valObjects: number }, private readonly onChange: () => void = () => {}) {
    this.s = {
      kind: 'site', site: o.site, server: o.server, state: 'connecting', round: null, progress: null, detail: null, since: new Date().toISOString(),
      train_objects: o.trainObjects, val_objects: o.valObjects, rounds: [], refusals: [], last_error: null, overlays: { round: null, items: [] },
    };
  }

  private set(state: SiteDaemonState, round?: number | null): void {
    if (this.s.state !== state) this.s.since = new Date().toISOString();
    this.s.state = state;
    if (round !== undefined) this.s.round = round;
    this.s.progress = null;
    this.s.detail = null;
  }

  /** The site daemon's events (runClient's onEvent). */
  event(e: ClientEvent): void {
    switch (e.type) {
      case 'joined': this.s.site = e.site; this.s.last_error = null; this.set('connected', e.round || null); break;
      case 'task':
        if (e.task.kind === 'fit' || e.task.fit) this.set('downloading', e.task.round);
        else if (e.task.kind === 'evaluate' || e.task.evaluate) this.set('evaluating', e.task.round);
        break;
      case 'fit_done': this.set('uploading', e.round); break;
      case 'update_accepted': this.set('connected', e.round); this.s.detail = `update of round ${e.round} accepted`; break;
      case 'update_refused':
        this.s.refusals.push({ round: e.round, message: e.message, at: new Date().toISOString() });
        this.s.refusals = this.s.refusals.slice(-20);
        break;
      case 'evaluated': {
        const m = e.metrics;
        this.s.rounds = [...this.s.rounds.filter((r) => r.round !== e.round), { round: e.round, dice: m.dice ?? null, iou: m.iou ?? null, box_dice: m.box_dice ?? null, personal_dice: m.personal_dice ?? null }]
          .sort((a, b) => a.round - b.round);
        this.set('connected', e.round);
        break;
      }
      case 'disconnected': this.set('reconnecting'); this.s.last_error = e.error; this.s.detail = `retry in ${(e.retryInMs / 1000).toFixed(1)} s`; break;
      case 'shutdown': this.set('finished'); this.s.detail = e.reason; break;
    }
    this.onChange();
  }

  progress(p: FitProgress): void {
    if (this.s.state === 'downloading') this.set('training', p.round);
    this.s.progress = p.done / p.total;
    this.s.detail = `epoch ${p.epoch}/${p.epochs}, step ${p.done}/${p.total}, loss ${p.loss.toFixed(3)}`;
    this.onChange();
  }

  setOverlays(round: number, overlays: Overlay[]): void {
    this.overlayPngs = new Map(overlays.map((o) => [o.index, o.png]));
    this.s.overlays = { round, items: overlays.map((o) => ({ index: o.index, id: o.id, dice: o.dice, url: `/overlays/${o.index}.png?round=${round}` })) };
    this.onChange();
  }

  overlayPng(index: number): Buffer | undefined {
    return this.overlayPngs.get(index);
  }

  snapshot(): SiteDashboardState {
    return structuredClone(this.s);
  }
}
