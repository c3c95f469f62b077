// Small file-system helpers shared by the workspaces.
import { access, open, rename, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fsyncDir, tempSibling } from './safetensors.ts';

/** True when the path exists (file or folder). */
export async function pathExists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}

/** True when the path is a folder. */
export async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** Resolves on the first of `events` (e.g. a write stream's 'drain', or its end), whichever comes first. */
export function onceAny(emitter: NodeJS.EventEmitter, events: readonly string[]): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      for (const ev of events) emitter.off(ev, done);
      resolve();
    };
    for (const ev of events) emitter.on(ev, done);
  });
}

/** Write a file (text or bytes) atomically (temp file in the same folder, fsync, rename, fsync folder). */
export async function writeFileAtomic(file: string, text: string | Uint8Array): Promise<void> {
  const tmp = tempSibling(file);
  const fh = await open(tmp, 'wx');
  try {
    await (typeof text === 'string' ? fh.writeFile(text, 'utf8') : fh.writeFile(text));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
  await fsyncDir(dirname(file));
}
