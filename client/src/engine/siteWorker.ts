// The body of a site's worker thread, started by SiteWorkerEngine (siteWorkerEngine.ts): the site's SamEngine with
// its own tfjs backend, model and cache. Messages: init -> ready {baseModelHash, names, sizes, boxDice}; fit / evaluate -> result.
import { parentPort, workerData } from 'node:worker_threads';
import { initBackend } from '@fedsam/shared/backend';
import type { HostTensor } from '@fedsam/shared/safetensors';
import { prepareSite, type SiteOptions } from './site.ts';
import { SamEngine } from './samEngine.ts';
import { boxBaseline } from './boxBaseline.ts';

type Request = { id: number; op: 'fit'; global: Map<string, HostTensor>; cfg: any } | { id: number; op: 'evaluate'; global: Map<string, HostTensor> } | { id: number; op: 'close' };

async function main() {
  const { site: opts, backend } = workerData as { site: Omit<SiteOptions, 'model' | 'log'> & { model?: string }; backend?: string };
  await initBackend(backend);
  // One engine per worker already spreads the sites over the cores: no embedding threads or data-parallel steps inside.
  const site = await prepareSite({ ...opts, quiet: true, embedWorkers: 0 });
  const engine = new SamEngine(site.loaded, site.cache, site.train, site.val, { quiet: true, dataParallel: false,
    onProgress: (progress) => parentPort!.postMessage({ op: 'progress', progress }) });
  parentPort!.postMessage({ op: 'ready', boxDice: await boxBaseline(site.val), baseModelHash: engine.baseModelHash, names: [...engine.decoderNames()], train: site.train.length, val: site.val.length });
  parentPort!.on('message', async (m: Request) => {
    try {
      if (m.op === 'close') { site.loaded.model.dispose(); process.exit(0); }
      const result = m.op === 'fit' ? await engine.fit(m.global, m.cfg) : await engine.evaluate(m.global);
      const transfer = m.op === 'fit' ? [...(result as any).weights.values()].map((t: HostTensor) => t.data.buffer as ArrayBuffer) : [];
      parentPort!.postMessage({ id: m.id, ok: true, result }, transfer);
    } catch (e) {
      parentPort!.postMessage({ id: m.id, ok: false, error: (e as Error).message });
    }
  });
}

main().catch((e) => {
  parentPort!.postMessage({ op: 'failed', error: (e as Error).message });
});
