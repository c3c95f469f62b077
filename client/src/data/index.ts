// Data module: datasets (folder / manifest / NIfTI), prompts, split, synthetic data, metrics.
export * from './types.ts';
export { loadDataset, formatReport, type LoadOptions } from './datasets.ts';
export { splitByGroup, type Split, type SplitOptions } from './split.ts';
export { boxPrompt, samplePoints, type PointPrompts, type PointOptions } from './prompts.ts';
export { synthesize, synthImage, SHAPES, type SynthOptions, type SynthSummary, type SiteSummary, type SiteStyle } from './synth.ts';
export { dice, iou, overlapCounts, boxBaselineDice } from './metrics.ts';
export { Rng, hashString } from './rng.ts';
export { labelStats, binaryMask, maskBox, filledBox } from './mask.ts';
export { readRGB, readGray, readLabels, writePng, hashFile } from './io.ts';
export { readNifti, geometryMismatch, extractSlice } from './nifti.ts';
