// Site authentication: `authorization: Bearer <token>` -> site name. The config holds sha256(token) per site; the
// comparison is constant-time and always runs over every site (no early exit).
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Metadata } from '@grpc/grpc-js';
import { METADATA_AUTHORIZATION } from '@fedsam/shared/transfer/messages';
import { unauthenticated } from './errors.ts';

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
  private readonly sites: Array<{ name: string; hash: Buffer }>;

  constructor(sites: ReadonlyArray<{ name: string; token_sha256: string }>) {
    this.sites = sites.map((s) => ({ name: s.name, hash: Buffer.from(s.token_sha256, 'hex') }));
  }

  get siteNames(): string[] {
    return this.sites.map((s) => s.name);
  }

  /** Site whose token this is; throws UNAUTHENTICATED otherwise. */
  authenticate(metadata: Metadata): string {
    const token = bearerToken(metadata);
    if (!token) throw unauthenticated('missing_token', 'missing credentials: send "authorization: Bearer <site token>" metadata');
    const h = createHash('sha256').update(token, 'utf8').digest();
    let found: string | undefined;
    for (const s of this.sites) {
      if (timingSafeEqual(h, s.hash) && found === undefined) found = s.name;
    }
    if (found === undefined) throw unauthenticated('bad_token', 'invalid token: it matches no configured site');
    return found;
  }
}
