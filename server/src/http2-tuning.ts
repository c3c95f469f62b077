// Larger HTTP/2 flow-control windows on the server's receiving side (uploads).
//
// grpc-js lets clients set their receive window ('grpc-node.flow_control_window') but has no server option: a
// server advertises Node's default 64 KiB stream and connection windows, so a 16 MB update needs ~250
// WINDOW_UPDATE round trips. This reaches into grpc-js internals (the http2 server options it keeps and its
// per-session hooks), with feature detection: when they are not there (another grpc-js version) nothing is
// changed and the server works at the default windows.
import type { Server } from '@grpc/grpc-js';

type Session = { setLocalWindowSize?: (n: number) => void };
type SessionHook = (http2Server: unknown) => (session: Session) => void;

interface GrpcServerInternals {
  commonServerOptions?: { settings?: Record<string, unknown> };
  _sessionHandler?: SessionHook;
  _channelzSessionHandler?: SessionHook;
}

/**
 * Call before bindAsync. `streamBytes`: each stream's receive window, which is also what a stream the server does
 * not read yet (an upload waiting for its permit) can make it buffer; `connectionBytes`: the connection's.
 * Returns whether the windows were raised.
 */
export function raiseServerFlowControlWindow(server: Server, streamBytes: number, connectionBytes = streamBytes): boolean {
  const s = server as unknown as GrpcServerInternals;
  const hooks = (['_sessionHandler', '_channelzSessionHandler'] as const).filter((k) => typeof s[k] === 'function');
  if (typeof s.commonServerOptions !== 'object' || s.commonServerOptions === null || hooks.length === 0) return false;
  const window = (n: number) => Math.min(2 ** 31 - 1, Math.max(65_535, Math.floor(n)));
  const bytes = window(connectionBytes);
  s.commonServerOptions.settings = { ...s.commonServerOptions.settings, initialWindowSize: window(streamBytes) };
  for (const key of hooks) {
    const original = s[key]!;
    s[key] = function (this: unknown, http2Server: unknown) {
      const handler = original.call(this, http2Server);
      return (session: Session) => {
        try {
          session.setLocalWindowSize?.(bytes);
        } catch {
          // not fatal: the default connection window stays
        }
        handler(session);
      };
    };
  }
  return true;
}
