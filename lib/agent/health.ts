import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Clock } from '../util/clock.js';

/** A poll sent within this long after an exchange is taken as held by the proxy while it is open. */
const HELD_POLL_GAP_MS = 5000;

/**
 * "Has talked to the integration-proxy within the presence window" (what
 * `/readyz` reports), on the monotonic clock. Talking means: an answer from
 * the proxy (any call: lease, heartbeat, results, release, output), or a long
 * poll held and then cut by the network (it reached the proxy; see
 * PollPolicy), or a long poll still held that was sent right after such an
 * exchange: a hold of any length (up to `waitMs`, which may exceed the window)
 * is not silence. The agent's first poll asks for no hold, so the first
 * exchange, and readiness, come within moments of start.
 */
export class Presence {
  private lastMs = -Infinity;

  constructor(
    private readonly clock: Clock,
    /** The presence window (DESIGN: 90 s). */
    private readonly windowMs: number,
  ) {}

  /** Records an exchange with the proxy, now. */
  contact(): void {
    this.lastMs = this.clock.monotonicMs();
  }

  /** True within the window after the last exchange, or while a poll sent just after one is held (`openPollSinceMs`). */
  ready(openPollSinceMs?: number): boolean {
    if (this.clock.monotonicMs() - this.lastMs <= this.windowMs) return true;
    return openPollSinceMs !== undefined && openPollSinceMs - this.lastMs <= HELD_POLL_GAP_MS;
  }
}

/** What the health server reports. */
export interface HealthSource {
  /** The agent's lifecycle state. */
  state(): string;
  /** True when the agent has talked to the proxy within the presence window. */
  ready(): boolean;
  /** Extra fields for the JSON body (agentId, running jobs…). */
  details(): Record<string, unknown>;
  /** Prometheus text and its content type, for `/metrics`. */
  metrics(): Promise<{ contentType: string; body: string }>;
}

/** Options of the health server. */
export interface HealthServerOptions {
  /** Default 0.0.0.0. */
  host: string;
  /** Default 8080; 0 picks a free port. */
  port: number;
}

/**
 * A small node:http server: `/healthz` answers 200 while the process is
 * alive and not stopped; `/readyz` answers 200 only when the agent has talked
 * to the integration-proxy within the presence window (so a Kubernetes
 * readiness probe shows an agent cut off from the proxy); `/metrics` serves
 * the Prometheus registry.
 */
export class HealthServer {
  private server: Server | undefined;

  constructor(
    private readonly source: HealthSource,
    private readonly opts: HealthServerOptions,
  ) {}

  /** The bound port (after `start`). */
  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      const send = (status: number, body: Record<string, unknown>) => {
        res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(JSON.stringify(body));
      };
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        send(405, { error: { code: 'invalid_request', message: 'use GET' } });
        return;
      }
      const state = this.source.state();
      if (path === '/healthz') {
        send(state === 'stopped' ? 503 : 200, { status: state === 'stopped' ? 'stopped' : 'ok', state });
      } else if (path === '/readyz') {
        const ready = state === 'running' && this.source.ready();
        send(ready ? 200 : 503, { status: ready ? 'ready' : 'not_ready', state, ...this.source.details() });
      } else if (path === '/metrics') {
        this.source.metrics().then(
          (m) => {
            res.writeHead(200, { 'content-type': m.contentType, 'cache-control': 'no-store' });
            res.end(m.body);
          },
          () => send(500, { error: { code: 'internal', message: 'metrics unavailable' } }),
        );
      } else {
        send(404, { error: { code: 'not_found', message: 'not found' } });
      }
    });
    // Probes are short; do not let a stuck client keep the process from exiting.
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
