// The current global as DownloadGlobal sends it: encoded for the wire per dtype and checksum, cut into chunk and
// trailer frames serialized once (proto.ts PreEncoded), so that each download only writes bytes. A new global is
// encoded as soon as the coordinator installs it (not on the first site's request), in every dtype and checksum
// sites have asked for so far (float16 encoding costs ~20-40 ms).
import { CHECKSUM_ALGORITHMS, type ChecksumAlgorithm } from '@fedsam/shared/transfer/checksum';
import { encodeTransfer, payloadChunks, trailerOf, type EncodedTransfer } from '@fedsam/shared/transfer/codec';
import type { WireDtype } from '@fedsam/shared/transfer/messages';
import type { Coordinator } from './coordinator.ts';
import { preEncodeDownloadFrame, type PreEncoded } from './proto.ts';

export interface GlobalDownload {
  round: number;
  version: string;
  encoded: EncodedTransfer;
  /** Chunk frames, then the trailer frame. */
  frames: PreEncoded[];
}

export class GlobalDownloads {
  /** The current global's encodings, per `${dtype}/${checksum}`. */
  private readonly current = new Map<string, { encoded: EncodedTransfer; frames: PreEncoded[] }>();
  private readonly requested = new Map<string, [WireDtype, ChecksumAlgorithm]>();

  constructor(private readonly coordinator: Coordinator, private readonly chunkBytes: number) {
    const best = CHECKSUM_ALGORITHMS[0]!; // what sites of this release ask for first
    this.requested.set(`F32/${best}`, ['F32', best]);
    coordinator.on('global', () => {
      // downloads in flight send their pre-serialized frames (copies), not the old global
      this.current.clear();
      // encoded on a later turn of the event loop (not inside the round's own steps)
      setImmediate(() => this.prepare());
    });
    this.prepare();
  }

  /** The current global in this dtype and checksum (encoded now if no site asked for them before). */
  get(dtype: WireDtype, checksum: ChecksumAlgorithm): GlobalDownload {
    const key = `${dtype}/${checksum}`;
    this.requested.set(key, [dtype, checksum]);
    let e = this.current.get(key);
    if (!e) {
      // A view of the global's buffer: the global is replaced, never written to, while it is current.
      const encoded = encodeTransfer(this.coordinator.globalWeights, dtype, checksum, { view: true });
      const frames = [...payloadChunks(encoded.payload, this.chunkBytes)].map((chunk) => preEncodeDownloadFrame({ chunk }));
      frames.push(preEncodeDownloadFrame({ trailer: trailerOf(encoded) }));
      this.current.set(key, (e = { encoded, frames }));
    }
    return { round: this.coordinator.round, version: this.coordinator.globalVersion, ...e };
  }

  private prepare(): void {
    for (const [dtype, checksum] of this.requested.values()) this.get(dtype, checksum);
  }
}
