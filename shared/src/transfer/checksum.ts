// Payload checksums and their negotiation (the receiver lists what it verifies, the sender takes the first it can
// compute).
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import * as zlib from 'node:zlib';
import { TransferError } from './errors.ts';

// The checksum guards the reassembly against corruption; authenticity comes from TLS and the site token. Per
// 16 MiB here: xxh3 1.2 ms, crc32 3.9 ms, sha256 ~15 ms.
//   xxh3   XXH3-64, seed 0, 8 bytes big-endian: @node-rs/xxhash (native; an optional dependency)
//   crc32  IEEE, 4 bytes big-endian: zlib's, in Node >= 20.15
//   sha256 always there
// A sender uses the first algorithm of the receiver's list (JoinResponse / DownloadRequest .checksum_algorithms)
// that it can compute, so either side may lack xxh3.
export type ChecksumAlgorithm = 'xxh3' | 'crc32' | 'sha256';
const zlibCrc32 = (zlib as unknown as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;
interface Xxh3Hasher { update(d: Uint8Array): unknown; digest(): bigint }
const Xxh3 = ((): { withSeed(): Xxh3Hasher } | undefined => {
  try {
    return (createRequire(import.meta.url)('@node-rs/xxhash') as { xxh3: { Xxh3: { withSeed(): Xxh3Hasher } } }).xxh3.Xxh3;
  } catch {
    return undefined; // not installed for this platform
  }
})();
/** What a sender uses when the receiver has not said what it takes (a peer from before xxh3). */
export const CHECKSUM_ALGORITHM: ChecksumAlgorithm = zlibCrc32 ? 'crc32' : 'sha256';
/** What this side can compute and verify, fastest first (what it announces to peers). */
export const CHECKSUM_ALGORITHMS: readonly ChecksumAlgorithm[] = [...(Xxh3 ? ['xxh3' as const] : []), ...(zlibCrc32 ? ['crc32' as const] : []), 'sha256'];

/**
 * The first of the receiver's algorithms (its preference first) the sender can compute (`senderHas`, default: all
 * this side has); without a common one, or without a list, the default.
 */
export function pickChecksum(receiverAccepts: readonly string[] | undefined, senderHas: readonly string[] = CHECKSUM_ALGORITHMS): ChecksumAlgorithm {
  for (const a of receiverAccepts ?? []) if (senderHas.includes(a) && (CHECKSUM_ALGORITHMS as readonly string[]).includes(a)) return a as ChecksumAlgorithm;
  return CHECKSUM_ALGORITHM;
}

export interface Checksum {
  update(data: Uint8Array): void;
  digest(): Uint8Array;
}

export function createChecksum(algorithm: string): Checksum {
  if (algorithm === 'sha256' || algorithm === '') {
    const h = createHash('sha256');
    return { update: (d) => void h.update(d), digest: () => new Uint8Array(h.digest()) };
  }
  if (algorithm === 'xxh3' && Xxh3) {
    const h = Xxh3.withSeed();
    return {
      update: (d) => void h.update(d),
      digest: () => {
        const out = new Uint8Array(8);
        new DataView(out.buffer).setBigUint64(0, h.digest(), false);
        return out;
      },
    };
  }
  if (algorithm === 'crc32' && zlibCrc32) {
    let c = 0;
    return {
      update: (d) => void (c = zlibCrc32(d, c)),
      digest: () => {
        const out = new Uint8Array(4);
        new DataView(out.buffer).setUint32(0, c >>> 0, false);
        return out;
      },
    };
  }
  throw new TransferError('checksum', `unsupported checksum algorithm "${algorithm}" (this side knows ${CHECKSUM_ALGORITHMS.join(', ')})`);
}
