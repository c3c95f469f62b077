// Every shape family and appearance regime of the corpus, and the one place that splits them into TRAIN (what
// `fedsam pretrain` sees) and HELD-OUT (only for evaluation: the pretraining never draws them).
import type { ShapeFamily } from './shapes/family.ts';
import type { Regime } from './regimes/regime.ts';
import { blob } from './shapes/blob.ts';
import { polygon } from './shapes/polygon.ts';
import { ellipse } from './shapes/ellipse.ts';
import { ring } from './shapes/ring.ts';
import { thinCurve } from './shapes/thinCurve.ts';
import { vesselTree } from './shapes/vesselTree.ts';
import { glyphStrokes } from './shapes/glyphStrokes.ts';
import { holeyBlob } from './shapes/holeyBlob.ts';
import { star } from './shapes/star.ts';
import { roundedRect } from './shapes/roundedRect.ts';
import { crescent } from './shapes/crescent.ts';
import { gear } from './shapes/gear.ts';
import { spiral } from './shapes/spiral.ts';
import { lobulated } from './shapes/lobulated.ts';
import { mr } from './regimes/mr.ts';
import { ct } from './regimes/ct.ts';
import { fluorescence } from './regimes/fluorescence.ts';
import { photo } from './regimes/photo.ts';
import { xray } from './regimes/xray.ts';
import { documentPaper } from './regimes/document.ts';
import { ultrasound } from './regimes/ultrasound.ts';
import { histology } from './regimes/histology.ts';
import { falseColour } from './regimes/falseColour.ts';

export const CORPUS_SPLITS = ['train', 'heldout'] as const;
export type CorpusSplit = (typeof CORPUS_SPLITS)[number];

/** Shape families per split. Disjoint: a held-out family is never drawn while pretraining. */
export const SHAPE_FAMILIES: Record<CorpusSplit, readonly ShapeFamily[]> = {
  train: [blob, polygon, ellipse, ring, thinCurve, vesselTree, glyphStrokes, holeyBlob, star, roundedRect],
  heldout: [crescent, gear, spiral, lobulated],
};

/** Appearance regimes per split. Disjoint, like the families. */
export const REGIMES: Record<CorpusSplit, readonly Regime[]> = {
  train: [mr, ct, fluorescence, photo, xray, documentPaper],
  heldout: [ultrasound, histology, falseColour],
};
