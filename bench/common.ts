// Helpers shared by the benchmark scripts.
import type { HostTensor } from '@fedsam/shared/safetensors';
export { tsWorker } from '@fedsam/shared/worker';

export const median = (xs: number[]): number => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)]!;


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
