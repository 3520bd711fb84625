import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

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
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, { error: { code: 'invalid_request', message: 'use GET' } });
      const state = this.source.state();
      if (path === '/healthz') return send(state === 'stopped' ? 503 : 200, { status: state === 'stopped' ? 'stopped' : 'ok', state });
      if (path === '/readyz') {
        const ready = state === 'running' && this.source.ready();
        return send(ready ? 200 : 503, { status: ready ? 'ready' : 'not_ready', state, ...this.source.details() });
      }
      if (path === '/metrics') {
        this.source.metrics().then(
          (m) => {
            res.writeHead(200, { 'content-type': m.contentType, 'cache-control': 'no-store' });
            res.end(m.body);
          },
          () => send(500, { error: { code: 'internal', message: 'metrics unavailable' } }),
        );
        return;
      }
      return send(404, { error: { code: 'not_found', message: 'not found' } });
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
