// Compute-backend policy: tfjs-node-gpu (CUDA), tfjs-node, wasm (SIMD), cpu — first that loads wins.
// `--backend` / FEDSAM_BACKEND override. The choice and the reason are returned for logging.
import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';

export type BackendName = 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';
export const BACKEND_ORDER: BackendName[] = ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'];
const ALIASES: Record<string, BackendName> = {
  gpu: 'tensorflow-gpu', 'tfjs-node-gpu': 'tensorflow-gpu', 'tensorflow-gpu': 'tensorflow-gpu', cuda: 'tensorflow-gpu',
  node: 'tensorflow', 'tfjs-node': 'tensorflow', tensorflow: 'tensorflow',
  wasm: 'wasm', cpu: 'cpu',
};

export interface BackendChoice { name: BackendName; reason: string; tried: string[] }

const require = createRequire(import.meta.url);
let chosen: BackendChoice | undefined;

export function parseBackendName(s: string): BackendName {
  const n = ALIASES[s.trim().toLowerCase()];
  if (!n) throw new Error(`unknown backend "${s}": use one of gpu, node, wasm, cpu`);
  return n;
}

async function tryBackend(name: BackendName): Promise<string | undefined> {
  try {
    if (name === 'tensorflow-gpu') {
      require('@tensorflow/tfjs-node-gpu');
      if (!(await tf.setBackend('tensorflow'))) return 'tfjs-node-gpu loaded but the tensorflow backend did not start';
    } else if (name === 'tensorflow') {
      require('@tensorflow/tfjs-node');
      if (!(await tf.setBackend('tensorflow'))) return 'tfjs-node loaded but the tensorflow backend did not start';
    } else if (name === 'wasm') {
      await import('@tensorflow/tfjs-backend-wasm');
      if (!(await tf.setBackend('wasm'))) return 'wasm backend did not start';
    } else {
      if (!(await tf.setBackend('cpu'))) return 'cpu backend did not start';
    }
    await tf.ready();
    return undefined;
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    return msg.includes('Cannot find module') ? 'not installed' : msg;
  }
}

/**
 * Pick and start the backend. Must run before any tensor exists (the wasm backend requires it).
 * `requested` (or FEDSAM_BACKEND) forces one backend; failure to start it is an error, not a fallback.
 */
export async function initBackend(requested?: string): Promise<BackendChoice> {
  if (chosen) return chosen;
  // PROD silences tfjs's console banners (e.g. the cpu backend's "install tfjs-node" note): we log the choice ourselves.
  tf.env().set('PROD', true);
  const forced = requested ?? process.env.FEDSAM_BACKEND;
  const tried: string[] = [];
  if (forced) {
    const name = parseBackendName(forced);
    const err = await tryBackend(name);
    if (err) throw new Error(`backend ${name} was requested (${requested ? '--backend' : 'FEDSAM_BACKEND'}) but cannot start: ${err}`);
    chosen = { name, reason: `requested by ${requested ? '--backend' : 'FEDSAM_BACKEND'}`, tried: [name] };
    return chosen;
  }
  for (const name of BACKEND_ORDER) {
    const err = await tryBackend(name);
    if (!err) {
      const simd = name === 'wasm' ? (tf.env().getBool('WASM_HAS_SIMD_SUPPORT') ? ' (SIMD)' : ' (no SIMD)') : '';
      const reason = tried.length ? `first available${simd}; skipped ${tried.join('; ')}` : `first in order${simd}`;
      chosen = { name, reason, tried: [...tried.map((t) => t.split(':')[0]), name] };
      return chosen;
    }
    tried.push(`${name}: ${err}`);
  }
  throw new Error(`no tfjs backend could start: ${tried.join('; ')}`);
}

export function currentBackend(): BackendChoice | undefined {
  return chosen;
}
