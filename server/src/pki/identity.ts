// A site's identity in its client certificate: the subject CN and a SAN URI urn:fedsam:site:<name> (as
// `fedsam provision` writes them). Both must name the same site when both are there.
import type { PeerCertificate } from 'node:tls';

export const SITE_URI_PREFIX = 'urn:fedsam:site:';

/** The site a verified client certificate names, or undefined when it names none (or two different ones). */
export function siteOfCertificate(cert: PeerCertificate): string | undefined {
  const uris = (cert.subjectaltname ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p.startsWith(`URI:${SITE_URI_PREFIX}`))
    .map((p) => p.slice(4 + SITE_URI_PREFIX.length));
  const cn = typeof cert.subject?.CN === 'string' ? cert.subject.CN : undefined;
  const names = new Set([...uris, ...(cn ? [cn] : [])]);
  return names.size === 1 ? [...names][0] : undefined;
}

/** Serial numbers compared as Node and X.509 libraries print them: upper-case hex without leading zeros. */
export function normalSerial(hex: string): string {
  return hex.replace(/[^0-9a-f]/gi, '').replace(/^0+(?=.)/, '').toUpperCase();
}
