// Site daemon settings from the environment (docker-compose): everything runClient needs except the engine.
//   FEDSAM_SERVER      host:port of the aggregator (required)
//   FEDSAM_SITE        this site's name (checked by the server against the token)
//   FEDSAM_TOKEN       the site token, or FEDSAM_TOKEN_FILE: a file holding it (docker secret)
//   FEDSAM_TLS_CA      PEM file of the CA of the server certificate (enables TLS); FEDSAM_TLS=1: TLS with system roots
//   FEDSAM_TLS_CLIENT_CERT / FEDSAM_TLS_CLIENT_KEY   client certificate for mutual TLS
//   FEDSAM_DOWNLOAD_DTYPE / FEDSAM_UPLOAD_DTYPE   f32 (default) or f16
import { readFileSync } from 'node:fs';
import type { WireDtype } from '@fedsam/shared/transfer';
import type { RunClientOptions } from './client.ts';

export class ClientEnvError extends Error {
  override name = 'ClientEnvError';
}

const dtype = (v: string | undefined, name: string): WireDtype | undefined => {
  if (!v) return undefined;
  const u = v.toUpperCase();
  if (u === 'F32' || u === 'FLOAT32') return 'F32';
  if (u === 'F16' || u === 'FLOAT16') return 'F16';
  throw new ClientEnvError(`${name}=${v}: use f32 or f16`);
};

export function clientOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): Omit<RunClientOptions, 'engine'> {
  const server = env.FEDSAM_SERVER;
  if (!server) throw new ClientEnvError('FEDSAM_SERVER (host:port of the aggregation server) is not set');
  let token = env.FEDSAM_TOKEN;
  if (!token && env.FEDSAM_TOKEN_FILE) {
    try {
      token = readFileSync(env.FEDSAM_TOKEN_FILE, 'utf8').trim();
    } catch (e) {
      throw new ClientEnvError(`cannot read FEDSAM_TOKEN_FILE ${env.FEDSAM_TOKEN_FILE}: ${(e as Error).message}`);
    }
  }
  if (!token) throw new ClientEnvError('no site token: set FEDSAM_TOKEN or FEDSAM_TOKEN_FILE');
  const tls = env.FEDSAM_TLS_CA || env.FEDSAM_TLS_CLIENT_CERT
    ? { ca: env.FEDSAM_TLS_CA || undefined, cert: env.FEDSAM_TLS_CLIENT_CERT || undefined, key: env.FEDSAM_TLS_CLIENT_KEY || undefined }
    : ['1', 'true', 'yes'].includes((env.FEDSAM_TLS ?? '').toLowerCase());
  return {
    server,
    token,
    site: env.FEDSAM_SITE || undefined,
    tls,
    downloadDtype: dtype(env.FEDSAM_DOWNLOAD_DTYPE, 'FEDSAM_DOWNLOAD_DTYPE'),
    uploadDtype: dtype(env.FEDSAM_UPLOAD_DTYPE, 'FEDSAM_UPLOAD_DTYPE'),
  };
}
