// @fedsam/client: the site side. Subpaths (@fedsam/client/<path>) reach every module directly.
export { runClient, type RunClientOptions } from './daemon/client.ts';
export type { LocalEngine, FitConfig, FitResult, EvaluateResult } from './engine/localEngine.ts';
export { SamEngine } from './engine/samEngine.ts';
export { prepareSite, type Site, type SiteOptions } from './engine/site.ts';
export { trainDecoder, evaluateItems, prepareItems } from './engine/trainer.ts';
export { EmbeddingCache } from './engine/cache.ts';
export * from './data/index.ts';
