// @fedsam/shared: what both daemons need. Subpaths (@fedsam/shared/<module>) reach every module directly.
export * from './config.ts';
export * from './backend.ts';
export * from './safetensors.ts';
export * from './checkpoint.ts';
export { SamModel } from './model/sam.ts';
export { loadModel, tinySamConfig, DEFAULT_MODEL, type LoadedModel } from './model/presets.ts';
export { SamProcessor } from './processor.ts';
export { verifyReferenceFolder, type ParityRow } from './reference.ts';
