// A live page over HTTP(S): static files, GET /api/state (JSON) and GET /api/events (server-sent events that carry
// the same state whenever it changes). Used by the server's federation page and the site's own page.
//
// On loopback it is plain HTTP and checks the Host header (a page elsewhere cannot reach it through DNS rebinding).
// On any other address it refuses to start without TLS, and asks for a token: `Authorization: Bearer <token>`, or
// `?token=` once (answered with a cookie and a redirect to the same page without it).
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { isLoopbackHost, parseHostPort } from './address.ts';

export class DashboardConfigError extends Error {
  override name = 'DashboardConfigError';
}

export type Route = (req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>;

export interface DashboardOptions {
  /** HOST:PORT (port 0: any free port). */
  listen: string;
  /** Folders whose files are served by name under /assets/ (the first holds index.html). */
  assets: URL[];
  /** The JSON of GET /api/state and of every server-sent event. */
  state: () => unknown;
  /** PEM files; required when `listen` is not a loopback address. */
  tls?: { cert: string; key: string };
  /** Required by every request when set; made up (and shown in `url`) when off loopback without one. */
  token?: string;
  /** More GET routes by exact path, e.g. images. */
  routes?: Record<string, Route>;
  /** Prefix routes: the longest prefix of the path that is a key here answers. */
  prefixRoutes?: Record<string, Route>;
  /** Least time between two events to the pages (ms). */
  throttleMs?: number;
}

export interface DashboardHandle {
  /** The page's address (with ?token= when a token is needed). */
  url: string;
  port: number;
  /** The state changed: pages get it (at most once per throttleMs, the last one always). */
  notify(): void;
  close(): Promise<void>;
}

const SHARED_ASSETS = new URL('./assets/', import.meta.url);
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.json': 'application/json',
};
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};
const COOKIE = 'fedsam_dashboard';
const digest = (s: string) => createHash('sha256').update(s).digest();

/** Files by name from the given folders (earlier folders win); read once at start. */
function loadAssets(dirs: URL[]): Map<string, { body: Buffer; type: string }> {
  const out = new Map<string, { body: Buffer; type: string }>();
  for (const dir of dirs) {
    const path = fileURLToPath(dir);
    for (const name of readdirSync(path)) {
      const type = TYPES[extname(name)];
      if (!type || out.has(name)) continue;
      out.set(name, { body: readFileSync(join(path, name)), type });
    }
  }
  if (!out.has('index.html')) throw new Error(`dashboard: no index.html in ${dirs.map((d) => fileURLToPath(d)).join(', ')}`);
  return out;
}

function cookieOf(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return undefined;
}

export async function startDashboard(o: DashboardOptions): Promise<DashboardHandle> {
  const { host, port } = parseHostPort(o.listen, '--dashboard');
  const loopback = isLoopbackHost(host);
  if (!loopback && !o.tls) {
    throw new DashboardConfigError(`the dashboard on ${o.listen} would be reachable from other machines: give it TLS (--dashboard-tls-cert and --dashboard-tls-key) or serve it on 127.0.0.1 (and reach it through an SSH tunnel)`);
  }
  const token = o.token ?? (loopback ? undefined : randomBytes(24).toString('base64url'));
  const tokenDigest = token ? digest(token) : undefined;
  const assets = loadAssets([...o.assets, SHARED_ASSETS]);
  const events = new Set<ServerResponse>();
  const throttleMs = o.throttleMs ?? 250;

  const send = (res: ServerResponse, status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}) => {
    res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, ...extra });
    res.end(body);
  };
  const authorized = (req: IncomingMessage, url: URL): boolean | 'redirect' => {
    if (!tokenDigest) return true;
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const given = bearer ?? cookieOf(req, COOKIE) ?? url.searchParams.get('token') ?? '';
    if (!timingSafeEqual(digest(given), tokenDigest)) return false;
    return !bearer && url.searchParams.has('token') ? 'redirect' : true;
  };
  const hostAllowed = (req: IncomingMessage): boolean => {
    if (!loopback) return true; // off loopback the token is the guard
    const h = (req.headers.host ?? '').toLowerCase();
    return [`127.0.0.1:${bound}`, `localhost:${bound}`, `[::1]:${bound}`, `${host.toLowerCase()}:${bound}`].includes(h);
  };

  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://dashboard');
    if (!hostAllowed(req)) return send(res, 421, 'text/plain', 'unexpected Host header\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'only GET\n', { allow: 'GET, HEAD' });
    const auth = authorized(req, url);
    if (!auth) return send(res, 401, 'text/plain', 'this dashboard needs its token: open the address it printed (…?token=…) or send Authorization: Bearer <token>\n');
    if (auth === 'redirect') {
      url.searchParams.delete('token');
      res.writeHead(303, { ...SECURITY_HEADERS, location: url.pathname + url.search,
        'set-cookie': `${COOKIE}=${encodeURIComponent(token!)}; HttpOnly;${o.tls ? ' Secure;' : ''} SameSite=Strict; Path=/` });
      return res.end();
    }
    const path = url.pathname;
    if (path === '/' || path === '/index.html') return send(res, 200, TYPES['.html']!, assets.get('index.html')!.body);
    if (path === '/api/state') return send(res, 200, 'application/json', JSON.stringify(o.state()));
    if (path === '/api/events') {
      res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream', connection: 'keep-alive' });
      res.write(`retry: 2000\nevent: state\ndata: ${JSON.stringify(o.state())}\n\n`);
      events.add(res);
      req.on('close', () => events.delete(res));
      return;
    }
    if (path.startsWith('/assets/')) {
      const a = assets.get(path.slice('/assets/'.length));
      return a ? send(res, 200, a.type, a.body) : send(res, 404, 'text/plain', 'not found\n');
    }
    const route = o.routes?.[path] ?? Object.entries(o.prefixRoutes ?? {}).filter(([p]) => path.startsWith(p)).sort((a, b) => b[0].length - a[0].length)[0]?.[1];
    if (route) return route(req, res, url);
    send(res, 404, 'text/plain', 'not found\n');
  };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    Promise.resolve(handler(req, res)).catch((e) => {
      if (!res.headersSent) send(res, 500, 'text/plain', `${(e as Error).message}\n`);
      else res.destroy();
    });
  };

  let server: Server;
  if (o.tls) {
    let cert: Buffer, key: Buffer;
    try {
      [cert, key] = [readFileSync(o.tls.cert), readFileSync(o.tls.key)];
    } catch (e) {
      throw new DashboardConfigError(`dashboard TLS: ${(e as Error).message}`);
    }
    server = createHttpsServer({ cert, key }, onRequest);
  } else {
    server = createHttpServer(onRequest);
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new DashboardConfigError(`cannot serve the dashboard on ${o.listen}: ${e.message}`)));
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;

  const keepAlive = setInterval(() => { for (const r of events) r.write(': keep-alive\n\n'); }, 15_000);
  keepAlive.unref();
  let last = 0;
  let pending: NodeJS.Timeout | undefined;
  const broadcast = () => {
    pending = undefined;
    last = Date.now();
    if (events.size === 0) return;
    const frame = `event: state\ndata: ${JSON.stringify(o.state())}\n\n`;
    for (const r of events) r.write(frame);
  };
  const shownHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' || host === '::' ? 'localhost' : host;
  return {
    url: `${o.tls ? 'https' : 'http'}://${shownHost}:${bound}/${token && !o.token ? `?token=${token}` : ''}`,
    port: bound,
    notify() {
      if (pending) return;
      const wait = Math.max(0, last + throttleMs - Date.now());
      pending = setTimeout(broadcast, wait);
      pending.unref();
    },
    async close() {
      clearInterval(keepAlive);
      if (pending) {
        clearTimeout(pending);
        broadcast(); // the last state reaches the open pages
      }
      for (const r of events) r.end();
      events.clear();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
