// Layer helpers over GraphBuilder shared by the ONNX vision-encoder and decoder graphs. Weights enter as
// initializers under their HF names and in HF layout ([out, in] for linear layers, used by Gemm with transB), so a
// graph can be checked against the checkpoint by name.
import type { HostTensor } from '../safetensors.ts';
import { GraphBuilder, float } from './graph.ts';

export type HostWeights = Map<string, HostTensor>;

export class SamGraph extends GraphBuilder {
  constructor(name: string, readonly weights: HostWeights) {
    super(name);
  }

  private readonly added = new Map<string, string>();

  /** The HF weight `name` as an initializer (added once), optionally reshaped (same data). */
  w(name: string, dims?: number[]): string {
    const key = dims ? `${name}|${dims.join(',')}` : name;
    const have = this.added.get(key);
    if (have) return have;
    const t = this.weights.get(name);
    if (!t) throw new Error(`missing model parameter ${name}`);
    if (t.dtype !== 'float32') throw new Error(`model parameter ${name} is ${t.dtype}, expected float32`);
    const n = this.initializer(dims ? `${name}@${dims.join('x')}` : name, 'FLOAT', dims ?? t.shape, t.data as Float32Array);
    this.added.set(key, n);
    return n;
  }

  has(name: string): boolean {
    return this.weights.has(name);
  }

  /** nn.Linear on 2-D rows x [N, in]: Gemm with the HF [out, in] weight (transB) and optional bias. */
  linear(x: string, prefix: string): string {
    const inputs = [x, this.w(`${prefix}.weight`)];
    if (this.has(`${prefix}.bias`)) inputs.push(this.w(`${prefix}.bias`));
    return this.op('Gemm', inputs, { transB: 1 });
  }

  /** nn.LayerNorm over the last axis (ONNX LayerNormalization, opset 17). */
  layerNorm(x: string, prefix: string, eps: number): string {
    return this.op('LayerNormalization', [x, this.w(`${prefix}.weight`), this.w(`${prefix}.bias`)], { axis: -1, epsilon: float(eps) });
  }

  /** Exact (erf) GELU as one kernel (com.microsoft Gelu; ORT fuses its own erf pattern into the same op). */
  gelu(x: string): string {
    return this.op('Gelu', [x], {}, { domain: 'com.microsoft' });
  }

  activation(name: string, x: string): string {
    if (name === 'gelu') return this.gelu(x);
    if (name === 'relu') return this.op('Relu', [x]);
    throw new Error(`unsupported activation ${name}`);
  }

  reshape(x: string, dims: number[]): string {
    return this.op('Reshape', [x, this.constI64(dims)]);
  }

  transpose(x: string, perm: number[]): string {
    return this.op('Transpose', [x], { perm });
  }

  slice(x: string, starts: number[], ends: number[], axes: number[]): string {
    return this.op('Slice', [x, this.constI64(starts), this.constI64(ends), this.constI64(axes)]);
  }

  add(a: string, b: string): string {
    return this.op('Add', [a, b]);
  }

  mul(a: string, b: string): string {
    return this.op('Mul', [a, b]);
  }

  matmul(a: string, b: string): string {
    return this.op('MatMul', [a, b]);
  }
}

/** Random-Fourier positional encoding on the host: coords in [0,1] [n, 2] -> [n, C] (sin | cos), G [2, C/2]. */
export function fourierFeatures(coords01: Float32Array, g: HostTensor): Float32Array {
  const half = g.shape[1];
  const G = g.data as Float32Array;
  const n = coords01.length / 2;
  const out = new Float32Array(n * 2 * half);
  for (let i = 0; i < n; i++) {
    const x = 2 * coords01[2 * i] - 1;
    const y = 2 * coords01[2 * i + 1] - 1;
    for (let j = 0; j < half; j++) {
      // float32 rounding at each step, as the float32 torch/tfjs graphs do
      const p = Math.fround(Math.fround(2 * Math.PI) * Math.fround(Math.fround(x * G[j]) + Math.fround(y * G[half + j])));
      out[i * 2 * half + j] = Math.sin(p);
      out[i * 2 * half + half + j] = Math.cos(p);
    }
  }
  return out;
}

/** HF get_image_wide_positional_embeddings on the host, NHWC [s, s, C] flattened. */
export function imageWidePositionalEmbeddingsHost(g: HostTensor, s: number): Float32Array {
  const grid = new Float32Array(s * s * 2);
  for (let y = 0; y < s; y++) {
    for (let x = 0; x < s; x++) {
      grid[(y * s + x) * 2] = (x + 0.5) / s;
      grid[(y * s + x) * 2 + 1] = (y + 0.5) / s;
    }
  }
  return fourierFeatures(grid, g);
}
