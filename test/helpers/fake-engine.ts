// A small deterministic LocalEngine for federated tests (the SAM engine has the same interface).
//   fit:      w = g + 0.5 (target - g) + delta * ((i mod 5) - 2) / 1000      (per element i of each tensor)
//   evaluate: err = mean |g - target|, dice = 1 / (1 + err), iou = dice / (2 - dice)
import type { HostTensor } from '@fedsam/shared/safetensors';
import type { EvaluateResult, FitConfig, FitResult, LocalEngine } from '@fedsam/client/engine/localEngine';

export const FAKE_BASE_HASH = 'f00dbabe'.repeat(8);

/** A tiny decoder layout with real mask_decoder.* names. */
export function tinyLayout(): Map<string, number[]> {
  return new Map<string, number[]>([
    ['mask_decoder.iou_token.weight', [1, 8]],
    ['mask_decoder.mask_tokens.weight', [4, 8]],
    ['mask_decoder.transformer.layers.0.mlp.lin1.weight', [16, 8]],
    ['mask_decoder.transformer.layers.0.mlp.lin1.bias', [16]],
    ['mask_decoder.upscale_conv1.weight', [8, 2, 2, 2]],
    ['mask_decoder.upscale_layer_norm.weight', [2]],
  ]);
}

export function tinyDecoder(seed = 1, layout = tinyLayout()): Map<string, HostTensor> {
  let s = seed >>> 0;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296 - 0.5;
  };
  const out = new Map<string, HostTensor>();
  for (const [name, shape] of layout) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = rnd();
    out.set(name, { dtype: 'float32', shape: [...shape], data });
  }
  return out;
}

export function cloneWeights(w: Map<string, HostTensor>): Map<string, HostTensor> {
  return new Map([...w].map(([n, t]) => [n, { dtype: t.dtype, shape: [...t.shape], data: (t.data as Float32Array).slice() }]));
}

export interface FakeEngineOptions {
  target: number;
  delta: number;
  numExamples: number;
  baseModelHash?: string;
  layout?: Map<string, number[]>;
  /** Delay of fit (ms); a function of the call index (0-based) for slow-then-fast behaviour. */
  fitDelayMs?: number | ((call: number) => number);
  /** fit never resolves. */
  hang?: boolean;
  /** fit waits for this first. */
  gate?: Promise<void>;
  /** fit produces NaN. */
  nan?: boolean;
}

export interface FitRecord {
  round: number;
  cfg: FitConfig;
  global: Map<string, HostTensor>;
  weights: Map<string, HostTensor>;
  numExamples: number;
}

export interface FakeEngine extends LocalEngine {
  fits: FitRecord[];
  evals: Array<{ global: Map<string, HostTensor>; result: EvaluateResult }>;
}

export function fitWeights(global: Map<string, HostTensor>, target: number, delta: number): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const [name, t] of global) {
    const g = t.data as Float32Array;
    const w = new Float32Array(g.length);
    for (let i = 0; i < g.length; i++) w[i] = g[i]! + 0.5 * (target - g[i]!) + (delta * ((i % 5) - 2)) / 1000;
    out.set(name, { dtype: 'float32', shape: [...t.shape], data: w });
  }
  return out;
}

export function evalMetrics(global: Map<string, HostTensor>, target: number): Record<string, number> {
  let err = 0;
  let n = 0;
  for (const t of global.values()) {
    for (const v of t.data) {
      err += Math.abs(v - target);
      n++;
    }
  }
  const dice = 1 / (1 + err / n);
  return { dice, iou: dice / (2 - dice), loss: err / n };
}

export function fakeEngine(o: FakeEngineOptions): FakeEngine {
  const layout = o.layout ?? tinyLayout();
  let calls = 0;
  const e: FakeEngine = {
    baseModelHash: o.baseModelHash ?? FAKE_BASE_HASH,
    fits: [],
    evals: [],
    decoderNames: () => new Map([...layout].map(([n, s]) => [n, [...s]])),
    async fit(global, cfg): Promise<FitResult> {
      const call = calls++;
      const delay = typeof o.fitDelayMs === 'function' ? o.fitDelayMs(call) : (o.fitDelayMs ?? 0);
      if (o.hang) await new Promise(() => undefined);
      if (o.gate) await o.gate;
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      const weights = fitWeights(global, o.target, o.delta);
      if (o.nan) (weights.values().next().value!.data as Float32Array)[0] = NaN;
      e.fits.push({ round: cfg.round, cfg, global: cloneWeights(global), weights: cloneWeights(weights), numExamples: o.numExamples });
      return { weights, numExamples: o.numExamples, metrics: { loss: evalMetrics(weights, o.target).loss!, steps: 3 } };
    },
    async evaluate(global): Promise<EvaluateResult> {
      const result = { numExamples: o.numExamples, metrics: evalMetrics(global, o.target) };
      e.evals.push({ global: cloneWeights(global), result });
      return result;
    },
  };
  return e;
}

/** Independent FedAvg (float64, in the test): sum_i n_i w_i / sum_i n_i, rounded to float32. */
export function referenceFedAvg(updates: Array<{ weights: Map<string, HostTensor>; numExamples: number }>): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  const total = updates.reduce((a, u) => a + u.numExamples, 0);
  for (const name of updates[0]!.weights.keys()) {
    const n = updates[0]!.weights.get(name)!.data.length;
    const r = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (const u of updates) s += u.numExamples * (u.weights.get(name)!.data[i] as number);
      r[i] = s / total;
    }
    out.set(name, r);
  }
  return out;
}
