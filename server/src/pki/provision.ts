// `fedsam provision`: startup kits for a federation whose sites are identified by certificate.
//   DIR/ca/        ca.pem, ca.key (0600), issued.json (serial of each site's certificate, revocations)
//   DIR/server/    ca.pem, server.pem, server.key (0600), crl.pem, server.yaml (requires client certificates)
//   DIR/<site>/    ca.pem, site.pem (CN and SAN name the site), site.key (0600), site.yaml (fedsam client --config)
// `--revoke a` adds site a's certificate to DIR/server/crl.pem; the server reads it again on SIGHUP.
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify, parse } from 'yaml';
import { pathExists, writeFileAtomic } from '@fedsam/shared/fsutil';
import { SiteSchema } from '../config.ts';
import { createCa, createCrl, describeCertificate, issueServerCertificate, issueSiteCertificate, type Issued, type Validity } from './certificates.ts';

export class ProvisionError extends Error {
  override name = 'ProvisionError';
}

export interface ProvisionOptions {
  out: string;
  /** Sites to make kits for (new ones; existing kits are kept). */
  sites?: string[];
  /** Host name (or IP) the sites reach the server by; with an optional :port (default 8443). */
  serverHost?: string;
  /** base_model of server.yaml (default: the built-in fedsam-tiny, so that the kit runs as is). */
  baseModel?: string;
  /** Sites whose certificates to revoke. */
  revoke?: string[];
  /** Validity of site certificates (tests make expired ones). */
  siteValidity?: Validity;
  log?: (line: string) => void;
}

interface IssuedRecord {
  format: 'fedsam-issued';
  server_host: string;
  sites: Record<string, { serial: string; not_after: string }>;
  revoked: Array<{ site: string; serial: string; date: string }>;
}

const RESERVED = new Set(['ca', 'server']);
const writeSecret = async (file: string, text: string) => {
  await writeFile(file, text, { mode: 0o600 });
  await chmod(file, 0o600); // also when the file existed with other bits
};

function hostPort(spec: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d{1,5}))?$/.exec(spec);
  if (!m) throw new ProvisionError(`--server-host: expected HOST or HOST:PORT, got "${spec}"`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: m[2] ? Number(m[2]) : 8443 };
}

export async function provision(o: ProvisionOptions): Promise<{ sites: string[]; revoked: string[] }> {
  const log = o.log ?? (() => undefined);
  const caDir = join(o.out, 'ca');
  const serverDir = join(o.out, 'server');
  const issuedFile = join(caDir, 'issued.json');
  let ca: Issued;
  let rec: IssuedRecord;
  if (await pathExists(join(caDir, 'ca.key'))) {
    ca = { cert: await readFile(join(caDir, 'ca.pem'), 'utf8'), key: await readFile(join(caDir, 'ca.key'), 'utf8'), serial: '' };
    rec = JSON.parse(await readFile(issuedFile, 'utf8')) as IssuedRecord;
  } else {
    if (!o.serverHost) throw new ProvisionError(`${o.out} has no federation CA yet: give --server-host (the name the sites reach the server by) to make one`);
    await mkdir(caDir, { recursive: true });
    ca = await createCa('FedSAM federation CA');
    await writeFile(join(caDir, 'ca.pem'), ca.cert);
    await writeSecret(join(caDir, 'ca.key'), ca.key);
    rec = { format: 'fedsam-issued', server_host: o.serverHost, sites: {}, revoked: [] };
    log(`CA: ${join(caDir, 'ca.pem')} (its key ca.key signs every kit and the CRL: keep it off the server)`);
  }
  const { host, port } = hostPort(o.serverHost ?? rec.server_host);

  // server kit (once)
  if (!(await pathExists(join(serverDir, 'server.pem')))) {
    await mkdir(serverDir, { recursive: true });
    const srv = await issueServerCertificate(ca, [host]);
    await writeFile(join(serverDir, 'ca.pem'), ca.cert);
    await writeFile(join(serverDir, 'server.pem'), srv.cert);
    await writeSecret(join(serverDir, 'server.key'), srv.key);
    await writeFile(join(serverDir, 'crl.pem'), await createCrl(ca, []));
    log(`server kit: ${serverDir} (certificate for ${[...new Set([host, 'localhost', '127.0.0.1'])].join(', ')})`);
  }

  // site kits
  const made: string[] = [];
  for (const site of o.sites ?? []) {
    const ok = SiteSchema.shape.name.safeParse(site);
    if (!ok.success || RESERVED.has(site)) throw new ProvisionError(`site name "${site}": ${ok.success ? 'reserved (ca, server)' : ok.error.issues[0]!.message}`);
    const dir = join(o.out, site);
    if (rec.sites[site]) {
      log(`site ${site}: kit exists (${dir}), kept`);
      continue;
    }
    await mkdir(dir, { recursive: true });
    const c = await issueSiteCertificate(ca, site, o.siteValidity);
    await writeFile(join(dir, 'ca.pem'), ca.cert);
    await writeFile(join(dir, 'site.pem'), c.cert);
    await writeSecret(join(dir, 'site.key'), c.key);
    await writeFile(join(dir, 'site.yaml'), [
      `# fedsam client --config ${join(dir, 'site.yaml')} --data <your data>`,
      `# Written by fedsam provision: this site is "${site}" by its certificate (site.pem); no token needed.`,
      stringify({ server: `${host.includes(':') ? `[${host}]` : host}:${port}`, site, tls: { ca: 'ca.pem', cert: 'site.pem', key: 'site.key' } }),
    ].join('\n'));
    rec.sites[site] = { serial: c.serial, not_after: describeCertificate(c.cert).validTo.toISOString() };
    made.push(site);
    log(`site ${site}: kit in ${dir}`);
  }

  // revocations
  const revoked: string[] = [];
  for (const site of o.revoke ?? []) {
    const s = rec.sites[site];
    if (!s) throw new ProvisionError(`--revoke ${site}: no certificate was issued to a site of that name here (issued: ${Object.keys(rec.sites).join(', ') || 'none'})`);
    if (!rec.revoked.some((r) => r.serial === s.serial)) rec.revoked.push({ site, serial: s.serial, date: new Date().toISOString() });
    revoked.push(site);
  }
  if (revoked.length > 0) {
    await writeFileAtomic(join(serverDir, 'crl.pem'), await createCrl(ca, rec.revoked.map((r) => ({ serial: r.serial, date: new Date(r.date) }))));
    log(`revoked ${revoked.join(', ')}: ${join(serverDir, 'crl.pem')} rewritten; reload the server (kill -HUP <pid>) to apply it`);
  }
  await writeFileAtomic(issuedFile, JSON.stringify(rec, null, 1) + '\n');

  // server.yaml: every site with a kit, none revoked
  const serverYaml = join(serverDir, 'server.yaml');
  const active = Object.keys(rec.sites).filter((n) => !rec.revoked.some((r) => r.site === n));
  let doc: Record<string, unknown>;
  if (await pathExists(serverYaml)) {
    doc = (parse(await readFile(serverYaml, 'utf8')) ?? {}) as Record<string, unknown>;
    const listed = new Set(((doc.sites as Array<{ name: string }> | undefined) ?? []).map((s) => s.name));
    doc.sites = [...((doc.sites as unknown[]) ?? []), ...active.filter((n) => !listed.has(n)).map((name) => ({ name }))];
  } else {
    doc = {
      listen: `0.0.0.0:${port}`,
      base_model: o.baseModel ?? 'fedsam-tiny',
      rounds: 10,
      min_available_clients: active.length || 1,
      min_fit_clients: Math.min(2, active.length || 1),
      min_evaluate_clients: 1,
      out_dir: 'runs',
      tls: { cert: 'server.pem', key: 'server.key', client_ca: 'ca.pem', crl: 'crl.pem' },
      sites: active.map((name) => ({ name })),
    };
  }
  await writeFileAtomic(serverYaml, [
    '# fedsam server --config server.yaml',
    '# Written by fedsam provision: sites are identified by their client certificates (signed by ca.pem, not in crl.pem).',
    stringify(doc),
  ].join('\n'));
  return { sites: made, revoked };
}
