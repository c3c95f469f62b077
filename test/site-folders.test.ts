// `simulate --data DIR`: which sub-folders of DIR are sites (cli/src/simulate.ts siteFolders).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { siteFolders } from '@fedsam/cli/simulate';

test('site folders: dataset sub-folders and symbolic links to them, by name; a dangling link is an error that names it', async () => {
  const root = await mkdtemp(join(tmpdir(), 'fedsam-sites-'));
  const data = join(root, 'data');
  await mkdir(join(data, 'site-a', 'images'), { recursive: true });
  await mkdir(join(data, 'site-a', 'masks'));
  await mkdir(join(root, 'hospital-b', 'images'), { recursive: true }); // a site's data kept elsewhere, linked in
  await symlink(join(root, 'hospital-b'), join(data, 'site-b'));
  await mkdir(join(data, 'notes')); // no dataset inside
  await mkdir(join(data, '.cache', 'images'), { recursive: true });
  assert.deepEqual(await siteFolders(data, 2), [join(data, 'site-a'), join(data, 'site-b')]);
  await assert.rejects(siteFolders(data, 3), /has 2 site folders but --sites 3 was asked/);
  await symlink(join(root, 'moved-away'), join(data, 'site-c'));
  await assert.rejects(siteFolders(data, 2), (e: Error) => e.message.includes(join(data, 'site-c')) && /symbolic link to nothing/.test(e.message));
});
