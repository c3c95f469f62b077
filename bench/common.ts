// Helpers shared by the benchmark scripts.
import type { HostTensor } from '@fedsam/shared/safetensors';
import { expectedSamParameters } from '@fedsam/shared/checkpoint/keys';
import { samVitBaseConfig } from '@fedsam/shared/config';
export { tsWorker } from '@fedsam/shared/worker';

/** The V8 flag bin/fedsam.mjs runs with (see there): benches of the daemons' work run with it too. */
export const NODE_HEAP_FLAG = '--initial-old-space-size=64';

/**
 * Run this script again with NODE_HEAP_FLAG unless it already has it (V8 heap flags only work on the command
 * line). Returns true in the process that should do the work.
 */
export async function withHeapFlag(script: string): Promise<boolean> {
  if (process.execArgv.some((a) => a.startsWith('--initial-old-space-size'))) return true;
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, [...process.execArgv, NODE_HEAP_FLAG, script, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exitCode = r.status ?? 1;
  return false;
}

/** What bin/fedsam.mjs sets for glibc's malloc (huge pages for ONNX Runtime's arena; see shared/src/onnx/runtime.ts). */
export const GLIBC_HUGEPAGES = 'glibc.malloc.hugetlb=1';

/**
 * Run this script again with GLIBC_TUNABLES as bin/fedsam.mjs has it (glibc reads it at process start only), unless
 * already set. Returns true in the process that should do the work.
 */
export async function withGlibcTunables(script: string): Promise<boolean> {
  if (process.platform !== 'linux' || (process.env.GLIBC_TUNABLES ?? '').includes('glibc.malloc.hugetlb') || process.env.FEDSAM_BENCH_NO_TUNABLES) return true;
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, [...process.execArgv, script, ...process.argv.slice(2)], { stdio: 'inherit', env: { ...process.env, GLIBC_TUNABLES: GLIBC_HUGEPAGES } });
  process.exitCode = r.status ?? 1;
  return false;
}

export const median = (xs: number[]): number => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)]!;


/** Names and shapes of the sam-vit-base mask decoder (4,058,340 parameters). */
export function vitBaseDecoderShapes(): Map<string, number[]> {
  return new Map([...expectedSamParameters(samVitBaseConfig())].filter(([n]) => n.startsWith('mask_decoder.')));
}

/** Deterministic pseudo-random float32 tensors (LCG, uniform ±0.05) with the given names and shapes. */
export function lcgWeights(shapes: Iterable<[string, number[]]>, seed: number): Map<string, HostTensor> {
  let s = seed >>> 0;
  const out = new Map<string, HostTensor>();
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const d = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      d[i] = (s / 4294967296 - 0.5) * 0.1;
    }
    out.set(name, { dtype: 'float32', shape, data: d });
  }
  return out;
}
