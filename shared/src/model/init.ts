// Deterministic random SAM weights (for a model trained from scratch, benchmarks, and tests without a checkpoint).
// Every parameter of samParameters(config) gets values from its own seeded stream (seed + parameter name),
// so a tensor's values do not depend on which parts were requested or on map order.
//
// Scheme (PyTorch's default module init, the one the original segment-anything modules train from, with the
// uniform distributions replaced by normals of the same variance, and zero biases as HF's _init_weights):
//   - LayerNorm weight 1, bias 0.
//   - Linear / Conv2d / ConvTranspose2d weights ~ N(0, 1/(3·fan_in)) — kaiming_uniform(a=√5)'s variance; fan_in as
//     torch computes it (in·k·k; ConvTranspose2d [in, out, k, k] uses out·k·k): std ≈ 0.021 for 768-wide layers.
//   - the vision blocks' residual-branch outputs (attn.proj, mlp.lin2) additionally × 1/√(2·num_hidden_layers), so a
//     frozen random vision encoder keeps the patch-embedding information (see InitSamWeightsOptions.residualScale).
//   - biases 0.
//   - nn.Embedding weights (iou/mask tokens, point / not-a-point / no-mask embeddings) ~ N(0, 1).
//   - shared_image_embedding.positional_embedding ~ N(0, 1) (original SAM's PositionEmbeddingRandom scale 1; HF's
//     SamPositionalEmbedding multiplies by hidden_size/2, which turns the Fourier features into noise). The tied
//     prompt_encoder.shared_embedding.positional_embedding is the same object.
//   - vision pos_embed and rel_pos_h / rel_pos_w: zeros (as both HF and the original initialise them).
import type { SamConfig } from '../config.ts';
import { SAM_PARTS, samParameters, samPartOf, SHARED_POS_EMBED_KEY, TIED_POS_EMBED_KEY, type SamParameter, type SamPart } from '../checkpoint/keys.ts';
import type { HostTensor } from '../safetensors.ts';

export interface InitSamWeightsOptions {
  /** Parts to create (default: all). Values do not depend on this choice. */
  parts?: SamPart[];
  /**
   * Extra factor on the std of the vision blocks' residual-branch outputs (attn.proj, mlp.lin2). Default
   * 1/√(2·num_hidden_layers) (GPT-2 style): with it a frozen random ViT-B-wide 12-block encoder keeps its patch
   * embeddings (cos(x_12, x_0) ≈ 0.94; neck outputs of two unrelated images correlate ≈ 0.04, of an image and a
   * 10%-noise copy ≈ 0.99); with 1 the blocks swamp them (≈ 0.40; 0.40).
   */
  residualScale?: number;
}

/** 32-bit FNV-1a of a string, to derive one stream per parameter. */
function fnv1a(s: string, h = 0x811c9dc5): number {
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

// Tables for Box–Muller without Math.log / Math.cos / Math.sin per sample (those cost ~20 ns each in V8, which made
// ViT-B's 94M values take ~4 s): ln on [1, 2) by a 1024-entry table + a 3-term log1p series (abs. error < 1e-12),
// cos/sin by a 4096-entry table + the angle-addition formula with a Taylor-expanded small angle (< 1e-13).
const LOG_N = 1024;
const LOG_T = new Float64Array(LOG_N);
const LOG_INV = new Float64Array(LOG_N);
for (let k = 0; k < LOG_N; k++) { LOG_T[k] = Math.log(1 + k / LOG_N); LOG_INV[k] = 1 / (1 + k / LOG_N); }
const TRIG_N = 4096;
const COS_T = new Float64Array(TRIG_N);
const SIN_T = new Float64Array(TRIG_N);
for (let k = 0; k < TRIG_N; k++) { COS_T[k] = Math.cos((2 * Math.PI * k) / TRIG_N); SIN_T[k] = Math.sin((2 * Math.PI * k) / TRIG_N); }

/**
 * Seeded normal generator: sfc32 (small, fast, 128-bit state, passes PractRand) for 32-bit uniforms, Box–Muller
 * for pairs of standard normals. Values depend only on (seed, stream).
 */
export class NormalRng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number, stream = '') {
    const s = seed >>> 0;
    this.a = fnv1a(stream, 0x9e3779b9 ^ s) | 0;
    this.b = fnv1a(stream, 0x243f6a88 ^ Math.imul(s, 0x85ebca6b)) | 0;
    this.c = fnv1a(stream, 0xb7e15162 ^ Math.imul(s, 0xc2b2ae35)) | 0;
    this.d = 1;
    for (let i = 0; i < 15; i++) this.nextU32();
  }

  nextU32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Fill `out` with N(0, std²) values (Box–Muller: r = √(-2 ln u1), θ = 2π u2; u1 = (k + ½)/2³² is never 0). */
  fillNormal(out: Float32Array, std = 1): Float32Array {
    // sfc32 inlined on local state (5x faster than calling nextU32).
    let a = this.a, b = this.b, c = this.c, d = this.d;
    const n = out.length;
    const STEP = (2 * Math.PI) / TRIG_N;
    for (let i = 0; i < n; i += 2) {
      let t = (((a + b) | 0) + d) | 0; d = (d + 1) | 0; a = b ^ (b >>> 9); b = (c + (c << 3)) | 0; c = (c << 21) | (c >>> 11); c = (c + t) | 0;
      // ln u1, u1 = (t + 0.5)/2^32 = m·2^-(1+z) with m in [1, 2)
      let lg: number;
      const z = Math.clz32(t);
      if (z > 20) lg = Math.log(((t >>> 0) + 0.5) / 4294967296);
      else {
        const v = (t << z) >>> 0;
        const k = (v >>> 21) & (LOG_N - 1);
        const m = (v + 0.5 * (1 << z)) / 2147483648;
        const x = (m - (1 + k / LOG_N)) * LOG_INV[k];
        lg = LOG_T[k] + x * (1 - x * (0.5 - x / 3)) - (1 + z) * Math.LN2;
      }
      t = (((a + b) | 0) + d) | 0; d = (d + 1) | 0; a = b ^ (b >>> 9); b = (c + (c << 3)) | 0; c = (c << 21) | (c >>> 11); c = (c + t) | 0;
      // θ = 2π·u2 = table angle k·STEP + small β
      const u = t >>> 0;
      const k = u >>> 20;
      const beta = (u & 0xfffff) * (STEP / 1048576);
      const b2 = beta * beta;
      const cb = 1 - b2 * (0.5 - b2 / 24);
      const sb = beta * (1 - b2 * (1 / 6 - b2 / 120));
      const r = std * Math.sqrt(-2 * lg);
      out[i] = r * (COS_T[k] * cb - SIN_T[k] * sb);
      if (i + 1 < n) out[i + 1] = r * (SIN_T[k] * cb + COS_T[k] * sb);
    }
    this.a = a; this.b = b; this.c = c; this.d = d;
    return out;
  }
}

type Kind = 'ones' | 'zeros' | 'normal';

/** How one parameter is initialised (kind and standard deviation), from its module kind in the key schema. */
export function samInitRule(name: string, p: SamParameter, residualScale = 1): { kind: Kind; std: number } {
  const isBias = name.endsWith('.bias');
  switch (p.module) {
    case 'Buffer': // SamPositionalEmbedding's Fourier features
    case 'Embedding':
      return { kind: 'normal', std: 1 };
    case 'Parameter': // vision pos_embed, rel_pos_h / rel_pos_w
      return { kind: 'zeros', std: 0 };
    case 'LayerNorm':
      return { kind: isBias ? 'zeros' : 'ones', std: 0 };
    default: {
      if (isBias) return { kind: 'zeros', std: 0 };
      // torch's fan_in is size(1)·k·k: in for Linear [out, in], in·k·k for Conv2d [out, in, k, k], out·k·k for
      // ConvTranspose2d [in, out, k, k].
      const fanIn = p.shape.slice(1).reduce((a, b) => a * b, 1);
      return { kind: 'normal', std: (p.residualOut ? residualScale : 1) / Math.sqrt(3 * fanIn) };
    }
  }
}

/**
 * Fixed-seed random weights for every parameter of `samParameters(config)` (in that order), or of the
 * requested parts. Same seed and config give the same values on every run.
 */
export function initSamWeights(config: SamConfig, seed: number, opts: InitSamWeightsOptions = {}): Map<string, HostTensor> {
  const parts = new Set<SamPart>(opts.parts ?? SAM_PARTS);
  const residualScale = opts.residualScale ?? 1 / Math.sqrt(2 * config.vision.num_hidden_layers);
  const out = new Map<string, HostTensor>();
  let pos: HostTensor | undefined;
  for (const [name, p] of samParameters(config)) {
    const shape = p.shape;
    if (!parts.has(samPartOf(name)!)) continue;
    if (name === SHARED_POS_EMBED_KEY || name === TIED_POS_EMBED_KEY) {
      // HF ties the two: one tensor, drawn from the shared key's stream.
      pos ??= { dtype: 'float32', shape: [...shape], data: new NormalRng(seed, SHARED_POS_EMBED_KEY).fillNormal(new Float32Array(shape[0] * shape[1])) };
      out.set(name, pos);
      continue;
    }
    const size = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(size);
    const rule = samInitRule(name, p, residualScale);
    if (rule.kind === 'ones') data.fill(1);
    else if (rule.kind === 'normal') new NormalRng(seed, name).fillNormal(data, rule.std);
    out.set(name, { dtype: 'float32', shape: [...shape], data });
  }
  return out;
}
