export { runClient, backoffDelay, FatalClientError, type RunClientOptions, type ClientHandle, type ClientResult, type ClientEvent, type BackoffOptions } from './client.ts';
export { Connection, channelCredentials, type ConnectionOptions, type TlsOptions, type DownloadedGlobal } from './connection.ts';
