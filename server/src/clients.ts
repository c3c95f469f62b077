// Sessions of connected sites: one live session per site (a new Join replaces the old one), liveness from any
// authenticated call (Heartbeat, GetTask, ...), expiry after heartbeat_timeout.
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { unauthenticated } from './errors.ts';

/** Why a site's session ended: it left, joined again (a new session), went silent, or its certificate was revoked. */
export type SessionEnd = 'left' | 'replaced' | 'expired' | 'revoked';

export interface Session {
  id: string;
  site: string;
  joinedAt: number;
  lastSeen: number;
  peer: string;
}

export interface RegistryEvents {
  change: [];
  lost: [site: string, reason: string, end: SessionEnd];
  joined: [site: string, session: Session];
}

export class ClientRegistry extends EventEmitter<RegistryEvents> {
  private readonly sessions = new Map<string, Session>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly timeoutMs: number, private readonly now: () => number = Date.now) {
    super();
    this.setMaxListeners(0);
  }

  join(site: string, peer = ''): Session {
    const previous = this.sessions.get(site);
    const s: Session = { id: randomUUID(), site, joinedAt: this.now(), lastSeen: this.now(), peer };
    this.sessions.set(site, s);
    if (previous) this.emit('lost', site, 'session replaced by a new Join', 'replaced');
    this.emit('joined', site, s);
    this.emit('change');
    return s;
  }

  /** Validate the session of an authenticated site and mark it alive. */
  touch(site: string, sessionId: string | undefined): Session {
    if (!sessionId) throw unauthenticated('no_session', 'missing x-fedsam-session metadata: call Join first');
    const s = this.sessions.get(site);
    if (!s || s.id !== sessionId) throw unauthenticated('stale_session', `session ${sessionId} of site ${site} is unknown, expired or replaced: Join again`);
    s.lastSeen = this.now();
    return s;
  }

  leave(site: string, sessionId: string, reason = 'left'): void {
    const s = this.sessions.get(site);
    if (s && s.id === sessionId) {
      this.sessions.delete(site);
      this.emit('lost', site, reason, 'left');
      this.emit('change');
    }
  }

  /** When the site was last heard from (any authenticated call), if it has a session. */
  lastSeen(site: string): number | undefined {
    return this.sessions.get(site)?.lastSeen;
  }

  /** End a site's session now (its credentials were revoked). */
  drop(site: string, reason: string): void {
    if (this.sessions.delete(site)) {
      this.emit('lost', site, reason, 'revoked');
      this.emit('change');
    }
  }

  has(site: string): boolean {
    return this.sessions.has(site);
  }

  get count(): number {
    return this.sessions.size;
  }

  /** Sites with a live session, sorted. */
  available(): string[] {
    return [...this.sessions.keys()].sort();
  }

  /** Drop sessions silent for longer than the timeout. */
  sweep(): void {
    const now = this.now();
    let changed = false;
    for (const [site, s] of this.sessions) {
      if (now - s.lastSeen > this.timeoutMs) {
        this.sessions.delete(site);
        this.emit('lost', site, `no heartbeat for ${((now - s.lastSeen) / 1000).toFixed(1)} s`, 'expired');
        changed = true;
      }
    }
    if (changed) this.emit('change');
  }

  startSweeper(intervalMs = Math.max(100, Math.min(1000, this.timeoutMs / 4))): void {
    this.stopSweeper();
    this.sweeper = setInterval(() => this.sweep(), intervalMs);
    this.sweeper.unref();
  }

  stopSweeper(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  /** Resolves once at least n sites are connected; rejects on timeout (null: none) or abort. */
  waitForAvailable(n: number, timeoutMs: number | null, signal?: AbortSignal): Promise<void> {
    if (this.count >= n) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const cleanup = () => {
        this.off('change', onChange);
        signal?.removeEventListener('abort', onAbort);
        if (timer) clearTimeout(timer);
      };
      const onChange = () => {
        if (this.count >= n) {
          cleanup();
          resolve();
        }
      };
      const onAbort = () => {
        cleanup();
        reject(signal!.reason ?? new Error('aborted'));
      };
      this.on('change', onChange);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (timeoutMs !== null) {
        timer = setTimeout(() => {
          cleanup();
          reject(new Error(`only ${this.count} of the ${n} required sites connected after ${(timeoutMs / 1000).toFixed(0)} s (${this.available().join(', ') || 'none'})`));
        }, timeoutMs);
      }
    });
  }
}
