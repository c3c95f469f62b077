// `fedsam client --config site.yaml`: the site daemon's settings as a schema (the one source of their defaults).
// `fedsam provision` writes one per site (server, site, tls); flags and FEDSAM_* variables override the file.
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DashboardConfigSchema, HostPortSchema } from '@fedsam/shared/web/dashboardConfig';

export const SiteConfigSchema = z.object({
  /** host:port of the aggregation server. */
  server: HostPortSchema,
  /** The name this site expects to be (the server checks it against its certificate or token). */
  site: z.string().min(1).nullable().default(null),
  /** Secret token; not needed with a client certificate. Prefer token_file. */
  token: z.string().min(1).nullable().default(null),
  token_file: z.string().min(1).nullable().default(null),
  /** TLS: ca (the server's CA; omitted: the system's), cert + key (mutual TLS: the site's identity). */
  tls: z.object({
    ca: z.string().min(1).nullable().default(null),
    cert: z.string().min(1).nullable().default(null),
    key: z.string().min(1).nullable().default(null),
  }).strict().nullable().default(null),
  data: z.string().min(1).nullable().default(null),
  model: z.string().min(1).nullable().default(null),
  cache_dir: z.string().min(1).nullable().default(null),
  /** The site's own state: its Adam state kept across rounds (fit.optimizer_state: keep), so a restart resumes it.
   *  null: runs/sites/<site> (siteStateDir). */
  state_dir: z.string().min(1).nullable().default(null),
  val_split: z.number().min(0).lt(1).default(0.2),
  seed: z.number().int().nonnegative().default(0),
  /** Abandon a round's local training after this long (null: no limit); the round goes on without the site. */
  fit_timeout_s: z.number().positive().nullable().default(null),
  upload_dtype: z.enum(['F32', 'F16']).default('F32'),
  download_dtype: z.enum(['F32', 'F16']).default('F32'),
  /** The site's own page: its state, its Dice and overlays of its validation images (null = off). */
  dashboard: DashboardConfigSchema.nullable().default(null),
}).strict().superRefine((c, ctx) => {
  if (c.tls && !!c.tls.cert !== !!c.tls.key) ctx.addIssue({ code: 'custom', path: ['tls'], message: 'tls.cert and tls.key go together (the site certificate and its key)' });
  if (!c.token && !c.token_file && !c.tls?.cert) {
    ctx.addIssue({ code: 'custom', path: ['token'], message: 'no credentials: give token / token_file (--token, --token-file), or a client certificate (tls.cert + tls.key)' });
  }
});

export type SiteConfig = z.output<typeof SiteConfigSchema>;

/** The site's state folder: state_dir, else runs/sites/<site> (one per site name: daemons side by side never share it). */
export function siteStateDir(c: Pick<SiteConfig, 'state_dir' | 'site'>): string {
  return c.state_dir ?? resolve('runs', 'sites', c.site ?? 'site');
}

export class SiteConfigError extends Error {
  override name = 'SiteConfigError';
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const PATH_KEYS = ['token_file', 'data', 'model', 'cache_dir', 'state_dir'] as const;

/** Read site.yaml; relative paths in it are taken from the file's folder. */
export async function readSiteConfigFile(file: string): Promise<Obj> {
  let doc: unknown;
  try {
    doc = parseYaml(await readFile(file, 'utf8'));
  } catch (e) {
    throw new SiteConfigError(`cannot read site config ${file}: ${(e as Error).message}`);
  }
  if (doc == null) return {};
  if (!isObj(doc)) throw new SiteConfigError(`${file}: expected a mapping of settings at the top level`);
  const dir = dirname(resolve(file));
  const rel = (p: unknown) => (typeof p === 'string' && !isAbsolute(p) ? resolve(dir, p) : p);
  for (const k of PATH_KEYS) if (k in doc && !(k === 'model' && doc[k] === 'fedsam-tiny')) doc[k] = rel(doc[k]);
  if (isObj(doc.tls)) for (const k of ['ca', 'cert', 'key']) if (k in doc.tls) doc.tls[k] = rel(doc.tls[k]);
  if (isObj(doc.dashboard)) for (const k of ['tls_cert', 'tls_key', 'token_file']) if (k in doc.dashboard) doc.dashboard[k] = rel(doc.dashboard[k]);
  return doc;
}

/** File (optional) + overrides (flags, environment; undefined = not given) -> validated settings. */
export async function loadSiteConfig(file: string | undefined, overrides: Obj): Promise<SiteConfig> {
  const base = file ? await readSiteConfigFile(file) : {};
  const merged: Obj = { ...base };
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) continue;
    merged[k] = isObj(v) && isObj(merged[k]) ? { ...(merged[k] as Obj), ...Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined)) } : v;
  }
  const r = SiteConfigSchema.safeParse(merged);
  if (!r.success) {
    const problems = r.error.issues.map((i) => `  - ${i.path.join('.') || '(root)'}: ${i.message}`).join('\n');
    throw new SiteConfigError(`invalid site settings (${file ? `${file} + flags` : 'flags'}):\n${problems}`);
  }
  return r.data;
}
