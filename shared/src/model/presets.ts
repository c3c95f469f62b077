// Where a SamModel comes from: an HF folder the user downloaded (config.json + model.safetensors), or the
// built-in small model that ships with fedsam and runs everything on two CPU cores in minutes.
import type { BoxJitter } from '../train/boxJitter.ts';
import { access } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DEFAULT_MODEL, DEFAULT_MODEL_DIR, fineTuneDefaults } from './builtin.ts';
import type { SamConfig } from '../config.ts';
import { frozenEncodersHash } from '../checkpoint/baseModelHash.ts';
import { hashWeights } from '../checkpoint/hash.ts';
import type { SamPart } from '../checkpoint/keys.ts';
import { loadSamCheckpoint } from '../checkpoint/load.ts';
import type { HostTensor } from '../safetensors.ts';
import { SamProcessor, loadPreprocessorConfig } from '../processor.ts';
import { SamModel } from './sam.ts';
import { currentEngine } from '../inference.ts';

export { DEFAULT_MODEL, DEFAULT_MODEL_DIR } from './builtin.ts';

export interface LoadedModel {
  /** A folder path, or 'fedsam-tiny'. */
  source: string;
  config: SamConfig;
  model: SamModel;
  processor: SamProcessor;
  /** sha256 of the frozen vision encoder (the embedding cache keys on it). */
  visionHash: string;
  /** sha256 of everything frozen: vision encoder, prompt encoder, shared positional embedding (the server checks it). */
  baseModelHash: string;
  /** Learning rate that suits this model when none is given (the recipe's 1e-5 for pretrained SAM). */
  recommendedLr: number;
  /** Box-prompt noise that suits this model in training (the recipe's 0–20 px outward for SAM weights). */
  recommendedBoxJitter: BoxJitter;
  /**
   * The vision encoder's weights when they are kept on the host instead of in the tfjs model (engine onnx: ONNX
   * Runtime builds its graph from them and tfjs never runs the encoder, so 360 MB for ViT-B are not copied into it).
   */
  visionHost?: Map<string, HostTensor>;
}

/** Split off the vision encoder's weights when the onnx engine runs it (see LoadedModel.visionHost). */
function placeWeights(weights: Map<string, HostTensor>, visionOnHost: boolean): { tfjs: Map<string, HostTensor>; visionHost?: Map<string, HostTensor> } {
  if (!visionOnHost) return { tfjs: weights };
  const tfjs = new Map<string, HostTensor>(), visionHost = new Map<string, HostTensor>();
  for (const [n, t] of weights) (n.startsWith('vision_encoder.') ? visionHost : tfjs).set(n, t);
  return { tfjs, visionHost };
}

/** The vision encoder's hash (the embedding cache's key) and the base model hash (checkpoint/baseModelHash.ts). */
export function frozenHashes(weights: Map<string, HostTensor>): { visionHash: string; baseModelHash: string } {
  return { visionHash: hashWeights(weights, 'vision_encoder.'), baseModelHash: frozenEncodersHash(weights) };
}

/** Processor for a model: the folder's preprocessor_config.json, else HF defaults sized to the model's input. */
export async function processorFor(config: SamConfig, folder?: string): Promise<SamProcessor> {
  const { config: pc, source } = await loadPreprocessorConfig(folder);
  if (source !== 'defaults') return new SamProcessor(pc, source);
  const s = config.vision.image_size;
  return new SamProcessor({ ...pc, size: { longest_edge: s }, pad_size: { height: s, width: s } }, `defaults for ${s}px input`);
}

/** Host weights of the built-in model. */
export async function tinySamWeights(): Promise<{ config: SamConfig; weights: Map<string, HostTensor> }> {
  return loadSamCheckpoint(DEFAULT_MODEL_DIR);
}

/**
 * Load a model: `undefined` or 'fedsam-tiny' gives the built-in model; anything else is an HF SAM folder.
 * Errors say which file is missing and what to do.
 */
export async function loadModel(spec: string | undefined, opts: { parts?: SamPart[]; visionOnHost?: boolean } = {}): Promise<LoadedModel> {
  const onHost = opts.visionOnHost ?? currentEngine().name === 'onnx';
  const builtin = !spec || spec === DEFAULT_MODEL;
  const dir = builtin ? DEFAULT_MODEL_DIR : resolve(spec!);
  if (!builtin) {
    try {
      await access(dir);
    } catch {
      throw new Error(`model folder ${dir} does not exist: pass --model with a folder holding config.json and model.safetensors (e.g. a download of facebook/sam-vit-base), or omit --model for the built-in ${DEFAULT_MODEL}`);
    }
  }
  const { config, weights } = await loadSamCheckpoint(dir, opts.parts ? { parts: opts.parts } : undefined);
  const hashes = frozenHashes(weights);
  const { tfjs, visionHost } = placeWeights(weights, onHost);
  const model = SamModel.fromHost(config, tfjs);
  const defaults = fineTuneDefaults(builtin);
  return {
    source: builtin ? DEFAULT_MODEL : dir, config, model, processor: await processorFor(config, dir), ...hashes,
    recommendedLr: defaults.lr, recommendedBoxJitter: defaults.boxJitter, visionHost,
  };
}

export const modelFolderFiles = (dir: string) => [join(dir, 'config.json'), join(dir, 'model.safetensors')];
