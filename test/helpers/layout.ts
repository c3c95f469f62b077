// The import rules of the workspaces, as test/layout.test.ts checks them: what a workspace's src/ may import.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';

export interface Workspace {
  /** Folder of the workspace (holds package.json and src/). */
  dir: string;
  /** Package name, e.g. @fedsam/server. */
  name: string;
  /** What its package.json declares (dependencies, optionalDependencies, peerDependencies). */
  declared: Set<string>;
  /** The other workspaces it may import. */
  mayImport: readonly string[];
}

export type Rule = 'direction' | 'undeclared' | 'outside';

export interface Violation {
  file: string;
  specifier: string;
  rule: Rule;
  detail: string;
}

export interface ImportRef {
  specifier: string;
  kind: 'import' | 'dynamic' | 'url' | 'resolve' | 'require';
}

/** Comments out of the way (strings and template literals are kept: worker paths live in them). */
function stripComments(src: string): string {
  let out = '';
  let i = 0;
  let quote: string | undefined;
  while (i < src.length) {
    const c = src[i]!;
    if (quote) {
      out += c;
      if (c === '\\') out += src[++i] ?? '';
      else if (c === quote) quote = undefined;
      i++;
    } else if (c === '/' && src[i + 1] === '/') {
      while (i < src.length && src[i] !== '\n') i++;
    } else if (c === '/' && src[i + 1] === '*') {
      const end = src.indexOf('*/', i + 2);
      i = end < 0 ? src.length : end + 2;
    } else {
      if (c === '"' || c === "'" || c === '`') quote = c;
      out += c;
      i++;
    }
  }
  return out;
}

/** Every module a source file refers to: import/export-from (static and dynamic), new URL(..., import.meta.url), import.meta.resolve, require. */
export function importsOf(source: string): ImportRef[] {
  const src = stripComments(source);
  const refs: ImportRef[] = [];
  const q = `(['"])([^'"\\n]+)\\1`;
  const patterns: Array<[RegExp, ImportRef['kind']]> = [
    [new RegExp(`(?:^|[;\\n}])\\s*(?:import|export)\\s+(?:type\\s+)?(?:[\\w*\\s{},$]*?\\s+from\\s+)?${q}`, 'g'), 'import'],
    [new RegExp(`\\bimport\\s*\\(\\s*${q}\\s*\\)`, 'g'), 'dynamic'],
    [new RegExp(`\\bnew\\s+URL\\s*\\(\\s*${q}\\s*,\\s*import\\.meta\\.url\\s*\\)`, 'g'), 'url'],
    [new RegExp(`\\bimport\\.meta\\.resolve\\s*\\(\\s*${q}\\s*\\)`, 'g'), 'resolve'],
    [new RegExp(`\\brequire\\s*\\)?\\s*\\(\\s*${q}\\s*\\)`, 'g'), 'require'],
    [new RegExp(`createRequire\\([^)]*\\)\\s*\\(\\s*${q}\\s*\\)`, 'g'), 'require'],
  ];
  for (const [re, kind] of patterns) for (const m of src.matchAll(re)) refs.push({ specifier: m[2]!, kind });
  return refs;
}

/** The package a bare specifier names: `pino`, `@grpc/grpc-js` (of `@grpc/grpc-js/build/x`). */
export function packageOf(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

const BUILTINS = new Set(builtinModules);
const MODULE_FILE = /\.(ts|mts|js|mjs|cjs)$/;

function sourceFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (/\.(ts|mts|mjs|js)$/.test(e) && !e.endsWith('.d.ts')) out.push(p);
  }
  return out.sort();
}

/** The workspaces of a repository root (package.json "workspaces"), with their rules from `rules` (package name -> may import). */
export function readWorkspaces(root: string, rules: Record<string, readonly string[]>): Workspace[] {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { workspaces: string[] };
  return pkg.workspaces.map((w) => {
    const dir = resolve(root, w);
    const p = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<string, Record<string, string> | string>;
    const declared = new Set<string>();
    for (const k of ['dependencies', 'optionalDependencies', 'peerDependencies']) for (const d of Object.keys((p[k] as Record<string, string>) ?? {})) declared.add(d);
    const name = p.name as string;
    if (!(name in rules)) throw new Error(`workspace ${w} (${name}) has no import rule: add it to the rules`);
    return { dir, name, declared, mayImport: rules[name]! };
  });
}

/** Every import of every workspace's src/ that breaks a rule. */
export function checkWorkspaces(workspaces: readonly Workspace[]): Violation[] {
  const names = new Set(workspaces.map((w) => w.name));
  const violations: Violation[] = [];
  for (const ws of workspaces) {
    const src = join(ws.dir, 'src');
    for (const file of sourceFiles(src)) {
      const rel = relative(dirname(ws.dir), file);
      for (const { specifier, kind } of importsOf(readFileSync(file, 'utf8'))) {
        // new URL(..., import.meta.url) to a data file (a .proto, a .wasm) is a resource, not a module
        if (kind === 'url' && !MODULE_FILE.test(specifier)) continue;
        const add = (rule: Rule, detail: string) => violations.push({ file: rel, specifier, rule, detail });
        if (specifier.startsWith('.') || specifier.startsWith('/')) {
          const target = resolve(dirname(file), specifier);
          if (target !== ws.dir && !target.startsWith(ws.dir + sep)) add('outside', `${kind} leaves ${relative(dirname(ws.dir), ws.dir)}/ (reaches ${relative(dirname(ws.dir), target)})`);
          continue;
        }
        if (specifier.startsWith('node:') || BUILTINS.has(specifier)) continue;
        const pkg = packageOf(specifier);
        if (names.has(pkg) && !ws.mayImport.includes(pkg)) add('direction', `${ws.name} may import ${ws.mayImport.join(', ') || 'no other workspace'}, not ${pkg}`);
        if (!ws.declared.has(pkg)) add('undeclared', `${pkg} is not declared in ${relative(dirname(ws.dir), join(ws.dir, 'package.json'))}`);
      }
    }
  }
  return violations;
}
