// Training-sample types shared by all dataset formats.

/**
 * Box prompt in original-image pixel coordinates, SAM/HF convention: [x0, y0, x1, y1] with
 * x0 = min column, y0 = min row, x1 = max column, y1 = max row of the object's pixels (max is the last
 * object pixel, i.e. a one-pixel object has x0 === x1).
 */
export type Box = [number, number, number, number];

export type { RGBImage } from '@fedsam/shared/image';
import type { RGBImage } from '@fedsam/shared/image';

/** Where a sample's pixels come from: an image file, or a slice of a NIfTI volume. */
export type ImageSource =
  | { kind: 'file'; path: string }
  | { kind: 'slice'; path: string; axis: number; index: number };

export interface Sample {
  /** Unique within a dataset, stable across runs (e.g. `img_0003:2`, `case_01:a2:s40:1`). */
  id: string;
  /** Patient / volume / image group; splits never put one group on both sides. */
  group: string;
  /**
   * Stable content identity of the image pixels (for the embedding cache): `sha256:<hex>` of the image file,
   * or `sha256:<hex of volume file>:a<axis>:s<index>:<intensity rule>` for NIfTI slices.
   * Samples of one image (label-indexed masks) share it.
   */
  imageKey: string;
  source: ImageSource;
  /** The label value of this object in its mask (1 for binary masks). */
  label: number;
  /** Tight bounding box of the object (no jitter). */
  box: Box;
  /** Object pixel count. */
  area: number;
  /** The prompt box when it is not `box` (evaluation with loose boxes under box crops: data/cropSample.ts). */
  promptBox?: Box;
  /** Set when this sample is a box crop of another (data/cropSample.ts): that sample, and where the crop lies in it. */
  cropOf?: { sample: Sample; x: number; y: number };
  width: number;
  height: number;
  /** 8-bit RGB pixels at original resolution. */
  loadImage(): Promise<RGBImage>;
  /** 0/1 mask of this object, width*height, row-major. */
  loadMask(): Promise<Uint8Array>;
}

export interface SkippedItem {
  file: string;
  reason: string;
}

export interface DatasetReport {
  format: 'folder' | 'manifest' | 'nifti';
  root: string;
  /** Number of samples (objects) loaded. */
  samples: number;
  /** Distinct images (imageKey). */
  images: number;
  /** Distinct groups. */
  groups: number;
  /** Everything that was not used, with the reason; nothing is dropped silently. */
  skipped: SkippedItem[];
  /** Non-fatal remarks (e.g. JPEG masks binarized, extra channels ignored). */
  notes: string[];
}

export class DatasetError extends Error {
  override name = 'DatasetError';
}
