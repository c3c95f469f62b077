// X.509 for site identity: a federation CA, the server's certificate, one client certificate per site, and the
// CRL of revoked site certificates. @peculiar/x509 over Node's WebCrypto (ECDSA P-256, SHA-256): no openssl
// binary, no native code, and CRLs (which node-forge cannot write).
import 'reflect-metadata'; // @peculiar/x509's dependency injection (tsyringe) needs it loaded first
import { randomBytes, webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';
import { SITE_URI_PREFIX } from './identity.ts';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 24 * 3600 * 1000;

/** A certificate and its private key, as PEM. */
export interface Issued {
  cert: string;
  key: string;
  serial: string;
}

const pemKey = async (k: CryptoKey) => x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', k as webcrypto.CryptoKey), 'PRIVATE KEY');
const serial = () => {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f; // positive
  return b.toString('hex');
};
const keys = () => webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as Promise<CryptoKeyPair>;

async function importKey(pem: string): Promise<CryptoKey> {
  return (await webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(pem), ALG, false, ['sign'])) as CryptoKey;
}

export interface Validity {
  notBefore?: Date;
  notAfter?: Date;
  days?: number;
}

const window = (v: Validity = {}) => {
  const notBefore = v.notBefore ?? new Date(Date.now() - 3600 * 1000); // an hour of clock skew
  return { notBefore, notAfter: v.notAfter ?? new Date(notBefore.getTime() + (v.days ?? 825) * DAY) };
};

/** A self-signed CA for one federation. */
export async function createCa(name: string, v?: Validity): Promise<Issued> {
  const k = await keys();
  const s = serial();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: s, name: `CN=${name}, O=FedSAM`, ...window({ days: 3650, ...v }), keys: k, signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(k.publicKey),
    ],
  });
  return { cert: cert.toString('pem'), key: await pemKey(k.privateKey), serial: s };
}

async function issue(ca: Issued, subject: string, san: x509.JsonGeneralNames, usage: string, v?: Validity): Promise<Issued> {
  const k = await keys();
  const caCert = new x509.X509Certificate(ca.cert);
  const s = serial();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: s, subject, issuer: caCert.subject, ...window(v), publicKey: k.publicKey, signingKey: await importKey(ca.key), signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([usage]),
      new x509.SubjectAlternativeNameExtension(san),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return { cert: cert.toString('pem'), key: await pemKey(k.privateKey), serial: s };
}

/** The server's certificate: DNS / IP names it is reached by (localhost and 127.0.0.1 always, for local trials). */
export function issueServerCertificate(ca: Issued, hosts: string[], v?: Validity): Promise<Issued> {
  const names = [...new Set([...hosts, 'localhost', '127.0.0.1'])];
  const san = names.map((h) => (isIP(h) ? { type: 'ip' as const, value: h } : { type: 'dns' as const, value: h }));
  return issue(ca, `CN=${hosts[0] ?? 'localhost'}, O=FedSAM server`, san, x509.ExtendedKeyUsage.serverAuth, v);
}

/** A site's client certificate: its name in the subject (CN) and in a SAN URI urn:fedsam:site:<name>. */
export function issueSiteCertificate(ca: Issued, site: string, v?: Validity): Promise<Issued> {
  return issue(ca, `CN=${site}, O=FedSAM site`, [{ type: 'url', value: `${SITE_URI_PREFIX}${site}` }], x509.ExtendedKeyUsage.clientAuth, v);
}

/** A CRL signed by the CA listing these serial numbers (hex); valid for `days`. */
export async function createCrl(ca: Issued, revoked: Array<{ serial: string; date?: Date }>, days = 3650): Promise<string> {
  const caCert = new x509.X509Certificate(ca.cert);
  const crl = await x509.X509CrlGenerator.create({
    issuer: caCert.subject,
    thisUpdate: new Date(Date.now() - 3600 * 1000),
    nextUpdate: new Date(Date.now() + days * DAY),
    entries: revoked.map((r) => ({ serialNumber: r.serial, revocationDate: r.date ?? new Date() })),
    signingKey: await importKey(ca.key),
    signingAlgorithm: ALG,
    extensions: [await x509.AuthorityKeyIdentifierExtension.create(caCert)],
  });
  // OpenSSL (and so Node's TLS) reads the RFC 7468 label X509 CRL, not the bare CRL this library writes.
  return x509.PemConverter.encode(crl.rawData, 'X509 CRL') + '\n';
}

/** Serial numbers (hex) a CRL lists, after checking it is signed by the CA. */
export async function crlSerials(crlPem: string, caPem: string): Promise<string[]> {
  const crl = new x509.X509Crl(crlPem);
  const ca = new x509.X509Certificate(caPem);
  if (!(await crl.verify({ publicKey: await ca.publicKey.export() }))) throw new Error('the CRL is not signed by the client CA');
  return crl.entries.map((e) => e.serialNumber);
}

/** Subject and validity of a PEM certificate (Node's own parser), for messages. */
export function describeCertificate(pem: string): { subject: string; validTo: Date; serial: string } {
  const c = new NodeX509(pem);
  return { subject: c.subject, validTo: new Date(c.validTo), serial: c.serialNumber };
}
