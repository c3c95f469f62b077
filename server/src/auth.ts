// Site authentication. By token: `authorization: Bearer <token>` -> site name; the config holds sha256(token) per
// site; the comparison is constant-time and always runs over every site (no early exit). By certificate (mutual
// TLS with tls.client_ca): the site is the name in the verified client certificate (pki/identity.ts), a revoked
// one is refused, and a token, if sent, must be the same site's.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import type { Metadata } from '@grpc/grpc-js';
import { METADATA_AUTHORIZATION } from '@fedsam/shared/transfer/messages';
import { permissionDenied, unauthenticated } from './errors.ts';
import { normalSerial, siteOfCertificate } from './pki/identity.ts';

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function bearerToken(metadata: Metadata): string | undefined {
  const v = metadata.get(METADATA_AUTHORIZATION)[0];
  if (typeof v !== 'string') return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(v);
  return m?.[1];
}

export class SiteAuthenticator {
  private readonly sites: Array<{ name: string; hash: Buffer | undefined }>;
  private revoked = new Set<string>();
  /** The certificate serial each site last authenticated with (to end the sessions of revoked ones). */
  private readonly serials = new Map<string, string>();

  /** `certificates`: sites are identified by their client certificate (the server requires one). */
  constructor(sites: ReadonlyArray<{ name: string; token_sha256?: string | null }>, private readonly certificates = false) {
    this.sites = sites.map((s) => ({ name: s.name, hash: s.token_sha256 ? Buffer.from(s.token_sha256, 'hex') : undefined }));
  }

  get siteNames(): string[] {
    return this.sites.map((s) => s.name);
  }

  /** Serial numbers (hex) of revoked client certificates (from the CRL; replaced on reload). */
  setRevoked(serials: Iterable<string>): void {
    this.revoked = new Set([...serials].map(normalSerial));
  }

  /** Sites whose last certificate is now revoked. */
  revokedSites(): string[] {
    return [...this.serials].filter(([, serial]) => this.revoked.has(serial)).map(([site]) => site);
  }

  /** The site of these credentials; throws UNAUTHENTICATED / PERMISSION_DENIED otherwise. */
  authenticate(metadata: Metadata, cert?: PeerCertificate): string {
    const token = bearerToken(metadata);
    if (!this.certificates) {
      if (!token) throw unauthenticated('missing_token', 'missing credentials: send "authorization: Bearer <site token>" metadata');
      return this.siteOfToken(token);
    }
    if (!cert?.raw) throw unauthenticated('no_certificate', 'this server identifies sites by client certificate: connect with the site certificate of your startup kit');
    if (this.revoked.has(normalSerial(cert.serialNumber))) {
      throw unauthenticated('revoked', `the client certificate of "${cert.subject?.CN}" (serial ${cert.serialNumber}) has been revoked`);
    }
    const site = siteOfCertificate(cert);
    if (!site || !this.sites.some((s) => s.name === site)) {
      throw permissionDenied('unknown_site', `the client certificate names ${site ? `site "${site}", which is not in this server's site list` : 'no single site'}`);
    }
    if (token && this.siteOfToken(token) !== site) {
      throw permissionDenied('token_site_mismatch', `the token does not belong to site ${site}, whose certificate this connection presents`);
    }
    this.serials.set(site, normalSerial(cert.serialNumber));
    return site;
  }

  private siteOfToken(token: string): string {
    const h = createHash('sha256').update(token, 'utf8').digest();
    let found: string | undefined;
    for (const s of this.sites) {
      if (s.hash && timingSafeEqual(h, s.hash) && found === undefined) found = s.name;
    }
    if (found === undefined) throw unauthenticated('bad_token', 'invalid token: it matches no configured site');
    return found;
  }
}
