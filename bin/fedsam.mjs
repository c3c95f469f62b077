#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.hugetlb=1 node --initial-old-space-size=64
// fedsam: the one command-line entry point. Sources are TypeScript, run through tsx (no build step).
//
// --initial-old-space-size=64 (V8, MB; only takes effect on the command line): with V8's small default initial
// heap, the 16 MB of gRPC messages per decoder transfer set off a mark-compact collection every ~30 ms, which
// costs about half the transfer rate (measured: bare grpc-js upload 380 -> 730 MB/s with the flag). The npm
// scripts and the Docker image pass it too; `node bin/fedsam.mjs` without it works, only transfers are slower.
import { register } from 'tsx/esm/api';
register();
await import('../cli/src/main.ts');
