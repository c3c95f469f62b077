// One file of a site's state folder (kept optimizer, SCAFFOLD controls): safetensors with a format tag and the
// fingerprint of the decoder it belongs to, written atomically, and never used for another model.
import { mkdir, readFile, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { decodeSafetensors, encodeSafetensors, type HostTensor } from '@fedsam/shared/safetensors';
import { writeFileAtomic } from '@fedsam/shared/fsutil';

/** Why a saved file was not used. */
export type DiscardReason = 'other-model' | 'unreadable';

export type StateRead =
  | { tensors: Map<string, HostTensor>; metadata: Record<string, string> }
  | { discarded?: DiscardReason; detail?: string };

/** Read `file` if it exists and was written for `format` and `fingerprint`; otherwise why not ({} when absent). */
export async function readSiteState(file: string, format: string, fingerprint: string): Promise<StateRead> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    return { discarded: 'unreadable', detail: (e as Error).message };
  }
  let c;
  try {
    c = decodeSafetensors(bytes, file);
  } catch (e) {
    return { discarded: 'unreadable', detail: (e as Error).message };
  }
  if (c.metadata.format !== format) return { discarded: 'unreadable', detail: `format ${c.metadata.format ?? '(none)'}, expected ${format}` };
  if (c.metadata.fingerprint !== fingerprint) return { discarded: 'other-model', detail: 'saved for another base model or decoder layout' };
  return { tensors: c.tensors as Map<string, HostTensor>, metadata: c.metadata };
}

/** Write `file` atomically (temp file, fsync, rename); `what` names it in the error that says which flag fixes it. */
export async function writeSiteState(file: string, what: string, tensors: Map<string, HostTensor>, metadata: Record<string, string>): Promise<void> {
  try {
    await mkdir(dirname(file), { recursive: true });
    await writeFileAtomic(file, encodeSafetensors(tensors, metadata));
  } catch (e) {
    throw new Error(`cannot write the site's ${what} to ${file} (${(e as Error).message}): give the site a writable state folder with --state-dir, FEDSAM_STATE_DIR or state_dir in site.yaml`, { cause: e });
  }
}

export async function removeSiteState(file: string | undefined): Promise<void> {
  if (file) await rm(file, { force: true });
}
