// The seeded PRNG lives in shared (the pretraining loop draws prompts with it); re-exported here for the data code.
export { Rng, hashString, mix32 } from '@fedsam/shared/rng';
