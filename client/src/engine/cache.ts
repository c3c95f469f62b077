// Embedding cache. The encoders are frozen, so each image is embedded once and reused across epochs and rounds.
// On disk: one safetensors file per image, keyed by image content + vision-encoder weights + processor settings.
// Files are written to a temp name and renamed, so a killed process leaves no half file under a real name; a file
// that fails to parse (or has the wrong shape) is recomputed, never read as data. In memory: a small LRU by bytes,
// so thousands of ViT-B embeddings (4 MB each) are never all held at once.
import { createHash } from 'node:crypto';
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { readSafetensors, writeSafetensors, type HostTensor } from '@fedsam/shared/safetensors';
import type { SamPreprocessorConfig } from '@fedsam/shared/processor';

export interface CachedEmbedding {
  /** NHWC [1, h, w, C] float32. */
  data: Float32Array;
  shape: [number, number, number, number];
  originalSize: [number, number];
  reshapedSize: [number, number];
}

export interface EmbeddingCacheOptions {
  dir: string;
  visionHash: string;
  processor: SamPreprocessorConfig;
  /** Store embeddings as float16 on disk (half the size; see README for the Dice effect). */
  float16?: boolean;
  /** In-memory LRU budget in bytes (default 512 MiB). */
  memoryBytes?: number;
}

export interface CacheStats { hits: number; memoryHits: number; misses: number; corrupt: number }

export class EmbeddingCache {
  readonly dir: string;
  private readonly settingsKey: string;
  private readonly lru = new Map<string, CachedEmbedding>();
  private lruBytes = 0;
  readonly stats: CacheStats = { hits: 0, memoryHits: 0, misses: 0, corrupt: 0 };

  constructor(private readonly opts: EmbeddingCacheOptions) {
    this.dir = opts.dir;
    const p = opts.processor;
    this.settingsKey = JSON.stringify({
      v: 1, vision: opts.visionHash, f16: !!opts.float16,
      proc: [p.do_resize, p.size.longest_edge, p.do_rescale, p.rescale_factor, p.do_normalize, p.image_mean, p.image_std, p.do_pad, p.pad_size],
    });
  }

  /** File key for an image identity (Sample.imageKey). */
  keyFor(imageKey: string): string {
    return createHash('sha256').update(this.settingsKey).update('\0').update(imageKey).digest('hex');
  }

  pathFor(key: string): string {
    return join(this.dir, key.slice(0, 2), `${key}.safetensors`);
  }

  private remember(key: string, e: CachedEmbedding): void {
    const budget = this.opts.memoryBytes ?? 512 * 2 ** 20;
    const bytes = e.data.byteLength;
    if (bytes > budget) return;
    this.lru.delete(key);
    this.lru.set(key, e);
    this.lruBytes += bytes;
    for (const [k, v] of this.lru) {
      if (this.lruBytes <= budget) break;
      this.lru.delete(k);
      this.lruBytes -= v.data.byteLength;
    }
  }

  /** The embedding if a valid file exists; undefined when absent or unreadable (the bad file is removed). */
  async get(key: string): Promise<CachedEmbedding | undefined> {
    const mem = this.lru.get(key);
    if (mem) {
      this.lru.delete(key);
      this.lru.set(key, mem);
      this.stats.memoryHits++;
      return mem;
    }
    const file = this.pathFor(key);
    try {
      await stat(file);
    } catch {
      return undefined;
    }
    try {
      const { tensors, metadata } = await readSafetensors(file);
      const t = tensors.get('image_embeddings');
      if (!t || t.dtype !== 'float32' || t.shape.length !== 4 || metadata.complete !== '1') throw new Error('not a complete embedding file');
      const e: CachedEmbedding = {
        data: t.data as Float32Array,
        shape: t.shape as CachedEmbedding['shape'],
        originalSize: JSON.parse(metadata.original_size ?? 'null'),
        reshapedSize: JSON.parse(metadata.reshaped_size ?? 'null'),
      };
      if (!Array.isArray(e.originalSize) || !Array.isArray(e.reshapedSize)) throw new Error('sizes missing');
      this.stats.hits++;
      this.remember(key, e);
      return e;
    } catch {
      this.stats.corrupt++;
      await rm(file, { force: true });
      return undefined;
    }
  }

  async put(key: string, e: CachedEmbedding): Promise<void> {
    const file = this.pathFor(key);
    await mkdir(join(this.dir, key.slice(0, 2)), { recursive: true });
    const t: HostTensor = { dtype: 'float32', shape: e.shape, data: e.data };
    await writeSafetensors(file, new Map([['image_embeddings', t]]), {
      float16: this.opts.float16,
      metadata: { format: 'pt', complete: '1', original_size: JSON.stringify(e.originalSize), reshaped_size: JSON.stringify(e.reshapedSize) },
    });
    this.stats.misses++;
    // What is read back from a float16 file is the rounded value: keep that in memory too, so epochs agree.
    if (this.opts.float16) {
      const again = await this.get(key);
      if (again) return;
    }
    this.remember(key, e);
  }
}
