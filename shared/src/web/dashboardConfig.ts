// The `dashboard` block of server.yaml and site.yaml, and the HOST:PORT form both configs use for addresses.
import { z } from 'zod';

export const HostPortSchema = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'expected host:port');

/** A page we serve (null = off). Off loopback it needs TLS and a token. */
export const DashboardConfigSchema = z.object({
  listen: HostPortSchema,
  tls_cert: z.string().min(1).nullable().default(null),
  tls_key: z.string().min(1).nullable().default(null),
  /** File holding the token pages must present; without one, off loopback a token is made up and logged. */
  token_file: z.string().min(1).nullable().default(null),
}).strict();
