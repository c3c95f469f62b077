// `fedsam server` configuration: a YAML/JSON file (snake_case keys) and/or flags, validated with zod.
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DashboardConfigSchema, HostPortSchema } from '@fedsam/shared/web/dashboardConfig';
import { StrategyConfigSchema } from './strategy/config.ts';

const hex64 = z.string().regex(/^[0-9a-f]{64}$/i, 'must be a sha256 hex digest (64 hex characters)').transform((s) => s.toLowerCase());

export const SiteSchema = z.object({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'site names: letters, digits, _ . - (max 64)'),
  /** sha256 (hex) of the site's token. The token itself never appears in the config. Optional when sites are
   *  identified by their client certificate (tls.client_ca). */
  token_sha256: hex64.nullable().default(null),
  /** weighting capped: this site's example counts are clipped here (instead of weighting.max_examples). */
  max_examples: z.number().int().positive().nullable().default(null),
  /** weighting registry: the size this site declared out of band (its weight; what it reports is ignored). */
  num_examples: z.number().int().positive().nullable().default(null),
}).strict();

/** How a site's self-reported num_examples becomes its weight in FedAvg and in evaluation means (weighting.ts). */
export const WEIGHTING_POLICIES = ['uniform', 'capped', 'registry', 'reported'] as const;
export const WeightingSchema = z.object({
  policy: z.enum(WEIGHTING_POLICIES).default('uniform'),
  /** capped: the clip for sites that declare no max_examples of their own. */
  max_examples: z.number().int().positive().default(10_000),
}).strict();

/** What every site trains with each round (FitConfig on the wire); the one source of these defaults. */
export const FitSchema = z.object({
  epochs: z.number().int().positive().default(1),
  /** Local Adam lr; null (default): the base model's own, SAM_FINETUNE_LR for SAM weights (the HF recipe),
   *  TINY_MODEL_LR for the built-in fedsam-tiny (shared/src/train/lr.ts). */
  lr: z.number().positive().nullable().default(null),
  batch_size: z.number().int().positive().default(4),
  /** Box-prompt noise in local training: 'sam' (SAM's own) or N px (the HF recipe's outward 0–N); null (default): the
   *  base model's own, TINY_MODEL_BOX_JITTER for the built-in model, RECIPE_BOX_JITTER for SAM weights (boxJitter.ts). */
  box_jitter: z.union([z.literal('sam'), z.number().int().nonnegative().max(1024)]).nullable().default(null),
  seed: z.number().int().nonnegative().default(0),
  /** Point prompts per object in local training, besides the box (0 and 0 = boxes only, the reference recipe). */
  points_positive: z.number().int().nonnegative().max(64).default(0),
  points_negative: z.number().int().nonnegative().max(64).default(0),
  /** keep: each site continues its Adam state (moments, step counts) across rounds, saved in its state folder;
   *  fresh: a new Adam every round (its first steps jolt every weight by ~lr; see the README's Results). */
  optimizer_state: z.enum(['keep', 'fresh']).default('keep'),
  /** Linear lr warm-up over a site optimizer's first N steps (across rounds with optimizer_state keep); 0 = none. */
  warmup_steps: z.number().int().nonnegative().default(0),
  /** Round r trains with lr · lr_decay^(r − 1) (1 = a constant lr). */
  lr_decay: z.number().gt(0).max(1).default(1),
  /** Ditto (Li et al. 2021): each site also trains a personal model of its own, pulled toward the global by
   *  λ/2·‖v − w‖², and reports its Dice beside the global's (README, "Personal models"). null (default): none. */
  ditto_lambda: z.number().nonnegative().nullable().default(null),
}).strict();

/** Round folders kept when neither keep_rounds nor a longer final_average_rounds asks for more. */
export const DEFAULT_KEEP_ROUNDS = 3;

export const ServerConfigSchema = z.object({
  /** host:port to listen on (port 0 = ephemeral). */
  listen: HostPortSchema.default('0.0.0.0:8080'),
  rounds: z.number().int().positive().default(10),
  min_available_clients: z.number().int().positive().default(2),
  min_fit_clients: z.number().int().positive().default(2),
  fraction_fit: z.number().gt(0).max(1).default(1),
  min_evaluate_clients: z.number().int().nonnegative().default(1),
  fraction_evaluate: z.number().min(0).max(1).default(1),
  /** Evaluate the global model every N rounds (0 = never). */
  evaluate_every: z.number().int().nonnegative().default(1),
  /** Also evaluate the initial global model (round 0). */
  evaluate_initial: z.boolean().default(false),
  round_timeout_s: z.number().positive().default(600),
  evaluate_timeout_s: z.number().positive().default(300),
  /** Attempts of one round when fewer than min_fit_clients answer (0 = retry until it works). */
  max_round_attempts: z.number().int().nonnegative().default(0),
  /** Wait before a round's second attempt; it doubles with every further attempt, up to ROUND_RETRY_MAX_DELAY_S. */
  round_retry_delay_s: z.number().nonnegative().default(1),
  /** Give up waiting for min_available_clients after this long (null = wait forever). */
  wait_for_clients_timeout_s: z.number().positive().nullable().default(null),
  heartbeat_interval_s: z.number().positive().default(5),
  /** A site silent this long is dropped from its round (and from the available pool until it heartbeats again). */
  heartbeat_timeout_s: z.number().positive().default(30),
  long_poll_s: z.number().positive().default(20),
  fit: FitSchema.default({}),
  strategy: StrategyConfigSchema.default({ name: 'scaffold' }),
  /** HF SAM folder (config.json + model.safetensors) the sites fine-tune, or "fedsam-tiny" (the built-in model):
   *  initial decoder + base model hash. */
  base_model: z.string().min(1).nullable().default(null),
  /** Without base_model: the frozen encoders' hash (frozenEncodersHash) the sites must have... */
  base_model_hash: z.string().regex(/^[0-9a-f]{8,128}$/i, 'expected a hex digest').transform((s) => s.toLowerCase()).nullable().default(null),
  /** ...and the initial decoder: a .safetensors file or a (decoder-only) HF folder. */
  initial_decoder: z.string().min(1).nullable().default(null),
  out_dir: z.string().min(1).default('runs/server'),
  /** Continue from out_dir/state.json (last completed round). */
  resume: z.boolean().default(false),
  /** Round folders kept in out_dir/rounds (older ones are deleted); default: enough for final_average_rounds, at least
   *  DEFAULT_KEEP_ROUNDS. */
  keep_rounds: z.number().int().positive().nullable().default(null),
  /**
   * The last round's global is the mean of the last N rounds' globals (tail averaging of the server's iterates, as
   * SWA averages SGD's): the final model does not hang on the last round's swing. 1 = the last round's own.
   * 3 by default: a wash over twelve rounds, decisive in short runs (README, Results).
   */
  final_average_rounds: z.number().int().positive().default(3),
  /** At the end, write frozen encoders + global decoder as a full HF folder here (needs base_model). */
  export_merged: z.string().min(1).nullable().default(null),
  sites: z.array(SiteSchema).default([]),
  weighting: WeightingSchema.default({}),
  tls: z.object({
    cert: z.string().min(1),
    key: z.string().min(1),
    /** Require client certificates signed by this CA (mutual TLS): a site is then the name in its certificate
     *  (a token, when the site has one, must belong to the same site). */
    client_ca: z.string().min(1).nullable().default(null),
    /** Certificate revocation list (PEM, from `fedsam provision --revoke`), re-read on SIGHUP. */
    crl: z.string().min(1).nullable().default(null),
  }).strict().nullable().default(null),
  /** The live federation page (null = off). Off loopback it needs TLS (its own or the server's) and a token. */
  dashboard: DashboardConfigSchema.nullable().default(null),
  /** Prometheus /metrics (null = off). */
  metrics: z.object({
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(9464),
  }).strict().nullable().default({}),
  limits: z.object({
    max_update_bytes: z.number().int().positive().default(256 * 1024 * 1024),
    chunk_bytes: z.number().int().min(1024).max(2 * 1024 * 1024).default(1024 * 1024),
    /** Uploads received at once (each holds one update in memory until folded in). */
    max_concurrent_uploads: z.number().int().positive().default(4),
    /** Downloads sent at once (the frames queued for a site are bounded by this times the decoder's size). */
    max_concurrent_downloads: z.number().int().positive().default(8),
    /** An upload stream must bring its UpdateHeader within this time (no permit is taken before it). */
    header_timeout_s: z.number().positive().default(10),
    /** Longest silence between two frames of an upload. */
    chunk_timeout_s: z.number().positive().default(30),
    /** A whole transfer (upload or download) gets transfer_timeout_s plus its size at min_upload_bytes_per_s. */
    transfer_timeout_s: z.number().positive().default(60),
    min_upload_bytes_per_s: z.number().positive().default(256 * 1024),
    /** HTTP/2 receive window of each stream: what a stream the server is not reading yet can make it buffer. */
    stream_window_bytes: z.number().int().min(65_535).default(2 * 1024 * 1024),
    /** HTTP/2 receive window of each connection (one per site). */
    connection_window_bytes: z.number().int().min(65_535).default(16 * 1024 * 1024),
    /** After this many refused uploads in a round a site is dropped from that round. */
    max_refusals_per_round: z.number().int().positive().default(10),
  }).strict().default({}),
  /** Seed of client sampling. */
  seed: z.number().int().nonnegative().default(0),
  shutdown_grace_s: z.number().nonnegative().default(5),
}).strict().superRefine((c, ctx) => {
  if (c.keep_rounds !== null && c.final_average_rounds - 1 > c.keep_rounds) {
    ctx.addIssue({ code: 'custom', path: ['final_average_rounds'], message: `final_average_rounds (${c.final_average_rounds}) needs the ${c.final_average_rounds - 1} rounds before the last on disk: set keep_rounds to at least ${c.final_average_rounds - 1}, or final_average_rounds to 1 (the last round's own global)` });
  }
  if (c.min_fit_clients > c.min_available_clients) {
    ctx.addIssue({ code: 'custom', path: ['min_fit_clients'], message: `min_fit_clients (${c.min_fit_clients}) exceeds min_available_clients (${c.min_available_clients})` });
  }
  if (c.min_evaluate_clients > c.min_available_clients) {
    ctx.addIssue({ code: 'custom', path: ['min_evaluate_clients'], message: `min_evaluate_clients (${c.min_evaluate_clients}) exceeds min_available_clients (${c.min_available_clients})` });
  }
  const names = new Set<string>();
  const hashes = new Set<string>();
  c.sites.forEach((s, i) => {
    if (names.has(s.name)) ctx.addIssue({ code: 'custom', path: ['sites', i, 'name'], message: `duplicate site "${s.name}"` });
    if (s.token_sha256 && hashes.has(s.token_sha256)) ctx.addIssue({ code: 'custom', path: ['sites', i, 'token_sha256'], message: `site "${s.name}" shares its token with another site` });
    if (!s.token_sha256 && !c.tls?.client_ca) {
      ctx.addIssue({ code: 'custom', path: ['sites', i, 'token_sha256'], message: `site "${s.name}" has no token_sha256: give it one, or identify sites by certificate (tls.client_ca)` });
    }
    if (c.weighting.policy === 'registry' && !s.num_examples) {
      ctx.addIssue({ code: 'custom', path: ['sites', i, 'num_examples'], message: `weighting registry: site "${s.name}" needs its declared num_examples` });
    }
    names.add(s.name);
    if (s.token_sha256) hashes.add(s.token_sha256);
  });
  if (c.export_merged && !c.base_model) {
    ctx.addIssue({ code: 'custom', path: ['export_merged'], message: 'export_merged needs base_model (the frozen encoders come from it)' });
  }
  if (c.initial_decoder && c.base_model) {
    ctx.addIssue({ code: 'custom', path: ['initial_decoder'], message: 'give either base_model or initial_decoder + base_model_hash, not both' });
  }
}).transform((c) => ({ ...c, keep_rounds: c.keep_rounds ?? Math.max(DEFAULT_KEEP_ROUNDS, c.final_average_rounds - 1) }));

export type ServerConfig = z.output<typeof ServerConfigSchema>;
export type ServerConfigInput = z.input<typeof ServerConfigSchema>;

export class ServerConfigError extends Error {
  override name = 'ServerConfigError';
}

/** Validate a config object; errors list every problem as `path: message`. */
export function parseServerConfig(input: unknown, source = 'server config'): ServerConfig {
  const r = ServerConfigSchema.safeParse(input);
  if (!r.success) {
    const problems = r.error.issues.map((i) => `  - ${i.path.join('.') || '(root)'}: ${i.message}`).join('\n');
    throw new ServerConfigError(`invalid ${source}:\n${problems}`);
  }
  return r.data;
}

const PATH_KEYS = ['base_model', 'initial_decoder', 'out_dir', 'export_merged'] as const;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Deep merge (objects merge; arrays and scalars from `over` replace; undefined values in `over` are ignored). */
export function mergeConfig(base: Obj, over: Obj): Obj {
  const out: Obj = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    out[k] = isObj(v) ? mergeConfig(isObj(out[k]) ? (out[k] as Obj) : {}, v) : v;
  }
  return out;
}

/** Read a YAML or JSON file; relative paths in it are resolved against the file's folder. */
export async function readConfigFile(file: string): Promise<Obj> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new ServerConfigError(`cannot read config file ${file}: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text); // YAML is a superset of JSON
  } catch (e) {
    throw new ServerConfigError(`${file}: not valid YAML/JSON: ${(e as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (!isObj(doc)) throw new ServerConfigError(`${file}: expected a mapping of settings at the top level`);
  const dir = dirname(resolve(file));
  const rel = (p: unknown) => (typeof p === 'string' && !isAbsolute(p) ? resolve(dir, p) : p);
  for (const k of PATH_KEYS) if (k in doc && !(k === 'base_model' && doc[k] === 'fedsam-tiny')) doc[k] = rel(doc[k]);
  if (isObj(doc.tls)) for (const k of ['cert', 'key', 'client_ca', 'crl']) if (k in doc.tls) doc.tls[k] = rel(doc.tls[k]);
  if (isObj(doc.dashboard)) for (const k of ['tls_cert', 'tls_key', 'token_file']) if (k in doc.dashboard) doc.dashboard[k] = rel(doc.dashboard[k]);
  return doc;
}

/** File (optional) + overrides (flags) -> validated config. */
export async function loadServerConfig(file: string | undefined, overrides: Obj = {}): Promise<ServerConfig> {
  const base = file ? await readConfigFile(file) : {};
  return parseServerConfig(mergeConfig(base, overrides), file ? `server config (${file} + flags)` : 'server config (flags)');
}

export function parseListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  let host = listen.slice(0, i);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const port = Number(listen.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ServerConfigError(`listen: invalid port in "${listen}"`);
  return { host, port };
}
