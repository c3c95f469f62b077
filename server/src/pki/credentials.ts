// Server TLS credentials that can be reloaded (the CRL after `fedsam provision --revoke`): grpc-js re-reads a
// credentials object's secure context when it says so (ServerCredentials.updateSecureContextOptions, used by
// grpc-js's own certificate providers). New connections then present their certificates against the new CRL.
import { readFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import type { SecureContextOptions } from 'node:tls';
import type { ServerConfig } from '../config.ts';

type Tls = NonNullable<ServerConfig['tls']>;

async function contextOptions(tls: Tls): Promise<SecureContextOptions> {
  const [cert, key, ca, crl] = await Promise.all([
    readFile(tls.cert), readFile(tls.key),
    tls.client_ca ? readFile(tls.client_ca) : undefined,
    tls.crl ? readFile(tls.crl) : undefined,
  ]);
  return { cert, key, ...(ca ? { ca } : {}), ...(crl ? { crl } : {}) };
}

export class ReloadableServerCredentials extends grpc.ServerCredentials {
  private constructor(private readonly tls: Tls, options: SecureContextOptions) {
    // requestCert + rejectUnauthorized: with a client CA, a connection without a valid certificate never opens
    super({ requestCert: !!tls.client_ca, rejectUnauthorized: !!tls.client_ca }, options);
  }

  static async load(tls: Tls): Promise<ReloadableServerCredentials> {
    return new ReloadableServerCredentials(tls, await contextOptions(tls));
  }

  /** Read the files again and apply them to connections made from now on. */
  async reload(): Promise<void> {
    this.updateSecureContextOptions(await contextOptions(this.tls));
  }

  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}
