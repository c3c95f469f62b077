// Progress output for long work: a bar with count, rate and ETA on a terminal; plain periodic lines otherwise
// (CI logs, docker), so nobody stares at a silent process.
import cliProgress from 'cli-progress';

export interface Progress { tick(n?: number): void; stop(): void }

export function createProgress(label: string, total: number, opts: { quiet?: boolean } = {}): Progress {
  if (opts.quiet || total === 0) return { tick() {}, stop() {} };
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar({
      format: `${label} [{bar}] {value}/{total} | {rate}/s | ETA {eta_formatted}`,
      stream: process.stderr, hideCursor: true, etaBuffer: 20,
    }, cliProgress.Presets.shades_classic);
    const t0 = Date.now();
    let value = 0;
    bar.start(total, 0, { rate: '0.0' });
    return {
      tick(n = 1) { value += n; bar.update(value, { rate: (value / Math.max((Date.now() - t0) / 1000, 1e-3)).toFixed(1) }); },
      stop() { bar.stop(); },
    };
  }
  const t0 = Date.now();
  let value = 0;
  let last = 0;
  return {
    tick(n = 1) {
      value += n;
      const now = Date.now();
      if (now - last > 5000 || value === total) {
        last = now;
        const rate = value / Math.max((now - t0) / 1000, 1e-3);
        const eta = rate > 0 ? Math.round((total - value) / rate) : 0;
        process.stderr.write(`${label}: ${value}/${total} (${rate.toFixed(1)}/s, ETA ${eta}s)\n`);
      }
    },
    stop() {},
  };
}
