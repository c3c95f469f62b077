// worker_threads running TypeScript modules. Node 20 does not apply `--import tsx` from execArgv to workers
// ("Unknown file extension .ts"), so a tiny eval bootstrap registers tsx's loader first, then imports the module.
import { Worker, type WorkerOptions } from 'node:worker_threads';

export function tsWorker(moduleUrl: string | URL, workerData: unknown, opts: Omit<WorkerOptions, 'eval' | 'workerData'> = {}): Worker {
  const api = import.meta.resolve('tsx/esm/api');
  const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(String(moduleUrl))}); });`;
  return new Worker(code, { ...opts, eval: true, workerData });
}
