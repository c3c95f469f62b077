// Prometheus metrics (one registry per server instance) and the /metrics HTTP endpoint.
import { EventEmitter } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { foldArenaBytes } from './strategy/foldArena.ts';

/** Weight transfers as they complete, for live views (the counters below are what Prometheus reads). */
export interface TransferEvents {
  transfer: [site: string, direction: 'in' | 'out', bytes: number];
}

export class ServerMetrics extends EventEmitter<TransferEvents> {
  readonly registry = new Registry();
  readonly round = new Gauge({ name: 'fedsam_round', help: 'Current (or last completed) federated round', registers: [this.registry] });
  readonly roundsCompleted = new Counter({ name: 'fedsam_rounds_completed_total', help: 'Fit rounds aggregated', registers: [this.registry] });
  readonly roundRetries = new Counter({ name: 'fedsam_round_retries_total', help: 'Round attempts retried for lack of updates', registers: [this.registry] });
  readonly clientsConnected = new Gauge({ name: 'fedsam_clients_connected', help: 'Sites with a live session', registers: [this.registry] });
  readonly bytesIn = new Counter({ name: 'fedsam_bytes_received_total', help: 'Weight payload bytes received (updates)', registers: [this.registry] });
  readonly bytesOut = new Counter({ name: 'fedsam_bytes_sent_total', help: 'Weight payload bytes sent (global model downloads)', registers: [this.registry] });
  readonly aggregationSeconds = new Histogram({
    name: 'fedsam_aggregation_seconds',
    help: 'CPU time spent aggregating one round (folding updates in + finishing)',
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly roundSeconds = new Histogram({
    name: 'fedsam_round_duration_seconds',
    help: 'Wall time of a fit round attempt',
    buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600],
    registers: [this.registry],
  });
  readonly updates = new Counter({
    name: 'fedsam_updates_total',
    help: 'Updates by result (accepted/refused) and refusal reason',
    labelNames: ['result', 'reason'] as const,
    registers: [this.registry],
  });
  readonly foldArenaBytes = new Gauge({
    name: 'fedsam_fold_arena_bytes',
    help: 'Memory reserved by the fold arena (upload receive buffers, held updates, FedAvg accumulator); it never shrinks',
    registers: [this.registry],
    collect() {
      this.set(foldArenaBytes());
    },
  });
  readonly globalMetric = new Gauge({
    name: 'fedsam_global_metric',
    help: 'Example-weighted evaluation metrics of the global model',
    labelNames: ['metric'] as const,
    registers: [this.registry],
  });

  constructor(defaultMetrics = true) {
    super();
    if (defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'fedsam_process_' });
  }

  /** A site downloaded the global model (payload bytes). */
  sent(site: string, bytes: number): void {
    this.bytesOut.inc(bytes);
    this.emit('transfer', site, 'out', bytes);
  }

  /** An update arrived from a site (payload bytes). */
  received(site: string, bytes: number): void {
    this.bytesIn.inc(bytes);
    this.emit('transfer', site, 'in', bytes);
  }

  /** Serve GET /metrics (and /healthz). Resolves with the bound port. */
  async listen(host: string, port: number): Promise<{ server: Server; port: number }> {
    const server = createServer((req, res) => {
      if (req.url === '/metrics') {
        this.registry.metrics().then(
          (text) => {
            res.writeHead(200, { 'content-type': this.registry.contentType });
            res.end(text);
          },
          (e) => {
            res.writeHead(500);
            res.end(String(e));
          },
        );
      } else if (req.url === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('ok\n');
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    return { server, port: (server.address() as AddressInfo).port };
  }
}
