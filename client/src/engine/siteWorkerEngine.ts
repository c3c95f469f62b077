// SiteWorkerEngine: the LocalEngine proxy of a site whose SamEngine lives in a worker thread (siteWorker.ts), so
// that several simulated sites use several cores.
import type { Worker } from 'node:worker_threads';
import { tsWorker } from '@fedsam/shared/worker';
import { currentBackend } from '@fedsam/shared/backend';
import type { HostTensor } from '@fedsam/shared/safetensors';
import type { LocalEngine, FitConfig, FitResult, EvaluateResult, FitProgress } from './localEngine.ts';
import type { SiteOptions } from './site.ts';

export class SiteWorkerEngine implements LocalEngine {
  /** Steps of the local fit in progress, as the worker reports them. */
  onProgress?: (p: FitProgress) => void;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  private constructor(private readonly worker: Worker, readonly baseModelHash: string, private readonly names: Map<string, number[]>,
    readonly trainCount: number, readonly valCount: number, readonly boxDice: number) {
    worker.on('message', (m: { id: number; ok: boolean; result?: unknown; error?: string; op?: string; progress?: FitProgress }) => {
      if (m.op === 'progress') return this.onProgress?.(m.progress!);
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(m.error));
    });
    worker.on('error', (e) => this.failAll(e));
    worker.on('exit', (code) => this.failAll(new Error(`engine worker exited (code ${code})`)));
  }

  private failAll(e: Error) {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  /** Start a worker that prepares the site (model, dataset, embeddings) and waits for tasks. */
  static async start(site: Omit<SiteOptions, 'model' | 'log'> & { model?: string }): Promise<SiteWorkerEngine> {
    const worker = tsWorker(new URL('./siteWorker.ts', import.meta.url), { site, backend: currentBackend()?.name });
    const ready = await new Promise<any>((resolve, reject) => {
      const onMsg = (m: any) => {
        if (m.op === 'ready') { worker.off('message', onMsg); resolve(m); }
        else if (m.op === 'failed') { worker.off('message', onMsg); reject(new Error(`site ${site.data}: ${m.error}`)); }
      };
      worker.on('message', onMsg);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`engine worker for ${site.data} exited (code ${code}) before it was ready`)));
    });
    return new SiteWorkerEngine(worker, ready.baseModelHash, new Map(ready.names), ready.train, ready.val, ready.boxDice);
  }

  private call<T>(msg: Record<string, unknown>): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...msg, id });
    });
  }

  decoderNames(): Map<string, number[]> {
    return this.names;
  }

  fit(global: Map<string, HostTensor>, cfg: FitConfig): Promise<FitResult> {
    return this.call({ op: 'fit', global, cfg });
  }

  evaluate(global: Map<string, HostTensor>): Promise<EvaluateResult> {
    return this.call({ op: 'evaluate', global });
  }

  async close(): Promise<void> {
    this.worker.postMessage({ op: 'close', id: 0 });
    await new Promise((r) => this.worker.once('exit', r));
  }
}
