#!/usr/bin/env node
// fedsam: the one command-line entry point. Sources are TypeScript, run through tsx (no build step).
import { register } from 'tsx/esm/api';
register();
await import('./cli.ts');
