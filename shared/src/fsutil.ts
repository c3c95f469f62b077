// Small file-system helpers shared by the workspaces.
import { access, open, rename } from 'node:fs/promises';
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

/** Write a text file atomically (temp file in the same folder, fsync, rename, fsync folder). */
export async function writeFileAtomic(file: string, text: string): Promise<void> {
  const tmp = tempSibling(file);
  const fh = await open(tmp, 'wx');
  try {
    await fh.writeFile(text, 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
  await fsyncDir(dirname(file));
}
