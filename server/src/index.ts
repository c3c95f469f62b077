export { runServer, type RunServerOptions, type ServerHandle, type ServerResult } from './server.ts';
export {
  ServerConfigSchema, parseServerConfig, loadServerConfig, mergeConfig, ServerConfigError,
  type ServerConfig, type ServerConfigInput,
} from './config.ts';
export { hashToken, SiteAuthenticator } from './auth.ts';
export * from './strategy/index.ts';
export type { RoundRecord, PersistedState } from './state.ts';
