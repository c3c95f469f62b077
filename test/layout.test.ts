// The floor plan: packages depend in one direction (shared below server and client, the cli above both), each
// workspace declares what it imports, and no relative import leaves its workspace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkWorkspaces, importsOf, readWorkspaces } from './helpers/layout.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** What each workspace may import (besides node: builtins and its own declared packages). */
export const IMPORT_RULES: Record<string, readonly string[]> = {
  '@fedsam/shared': [],
  '@fedsam/server': ['@fedsam/shared'],
  '@fedsam/client': ['@fedsam/shared'],
  '@fedsam/cli': ['@fedsam/shared', '@fedsam/server', '@fedsam/client'],
};

test('workspaces import in one direction, declare every package they import, and stay inside their folder', () => {
  const workspaces = readWorkspaces(ROOT, IMPORT_RULES);
  assert.deepEqual(workspaces.map((w) => w.name).sort(), Object.keys(IMPORT_RULES).sort());
  const problems = checkWorkspaces(workspaces).map((v) => `${v.file}: '${v.specifier}' (${v.rule}: ${v.detail})`);
  assert.deepEqual(problems, []);
});

test('the import scanner sees every form, and the check catches each kind of violation', async () => {
  const refs = importsOf([
    "import { a } from './a.ts';",
    "import type { B } from '@fedsam/server/b';",
    "export * from './c.ts';",
    "export { d } from 'pino';",
    "import 'side-effect';",
    "const e = await import('@fedsam/client/e');",
    "const w = new URL('../../x/worker.ts', import.meta.url);",
    "const r = import.meta.resolve('tsx/esm/api');",
    "const q = createRequire(import.meta.url)('@scope/native');",
    "// import { no } from 'commented-out';",
    "/* export * from 'also-commented'; */",
  ].join('\n'));
  assert.deepEqual(refs.map((r) => r.specifier).sort(), [
    '../../x/worker.ts', './a.ts', './c.ts', '@fedsam/client/e', '@fedsam/server/b', '@scope/native', 'pino', 'side-effect', 'tsx/esm/api',
  ].sort());

  // a synthetic repository with one violation of each kind
  const root = await mkdtemp(join(tmpdir(), 'fedsam-layout-'));
  const ws = async (name: string, deps: string[], files: Record<string, string>) => {
    const dir = join(root, name);
    await mkdir(join(dir, 'src', 'sub'), { recursive: true });
    await writeFile(join(dir, 'package.json'), JSON.stringify({ name: `@fedsam/${name}`, dependencies: Object.fromEntries(deps.map((d) => [d, '*'])) }));
    for (const [f, text] of Object.entries(files)) await writeFile(join(dir, 'src', f), text);
  };
  await writeFile(join(root, 'package.json'), JSON.stringify({ workspaces: ['shared', 'server', 'client'] }));
  await ws('shared', ['zod'], { 'ok.ts': "import { z } from 'zod';\nimport { readFile } from 'node:fs';\n" });
  await ws('server', ['@fedsam/shared', '@fedsam/client'], {
    'a.ts': "import { runClient } from '@fedsam/client/daemon/client';\n", // direction (declared, still not allowed)
    'sub/b.ts': "import { x } from '../../../shared/src/ok.ts';\nconst w = new URL('../../../client/src/w.ts', import.meta.url);\n", // outside x2
    'c.ts': "import { pino } from 'pino';\nimport { ok } from '@fedsam/shared/ok';\n", // undeclared pino
  });
  await ws('client', ['@fedsam/shared'], { 'd.ts': "const m = await import('@fedsam/server/e');\n" }); // direction + undeclared
  const rules = { '@fedsam/shared': [], '@fedsam/server': ['@fedsam/shared'], '@fedsam/client': ['@fedsam/shared'] };
  const found = checkWorkspaces(readWorkspaces(root, rules)).map((v) => `${v.file} ${v.specifier} ${v.rule}`).sort();
  assert.deepEqual(found, [
    'client/src/d.ts @fedsam/server/e direction',
    'client/src/d.ts @fedsam/server/e undeclared',
    'server/src/a.ts @fedsam/client/daemon/client direction',
    'server/src/c.ts pino undeclared',
    'server/src/sub/b.ts ../../../client/src/w.ts outside',
    'server/src/sub/b.ts ../../../shared/src/ok.ts outside',
  ]);
  assert.throws(() => readWorkspaces(root, { '@fedsam/shared': [] }), /no import rule/);
});

test('each SAM part can be found by its HF class name (modeling_sam.py) in the model code and the key schema', async () => {
  const { readFile, readdir } = await import('node:fs/promises');
  const dir = join(ROOT, 'shared/src/model');
  const files = [...(await readdir(dir)).map((f) => join(dir, f)), join(ROOT, 'shared/src/checkpoint/keys.ts')];
  const text = (await Promise.all(files.map((f) => readFile(f, 'utf8')))).join('\n');
  const missing = [
    'SamModel', 'SamVisionEncoder', 'SamPatchEmbeddings', 'SamVisionLayer', 'SamVisionAttention', 'SamMLPBlock', 'SamVisionNeck',
    'SamPromptEncoder', 'SamPositionalEmbedding', 'SamMaskEmbedding', 'SamMaskDecoder', 'SamTwoWayTransformer', 'SamTwoWayAttentionBlock',
    'SamAttention', 'SamFeedForward',
  ].filter((name) => !new RegExp(`\\b${name}\\b`).test(text));
  assert.deepEqual(missing, []);
});
