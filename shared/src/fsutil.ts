// Small file-system helpers shared by the workspaces.
import { access } from 'node:fs/promises';

/** True when the path exists (file or folder). */
export async function pathExists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}
