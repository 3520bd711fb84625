import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { AgentView } from '../protocol/schemas.js';
import type { PoolCount } from './store/stats.js';

/** Where the scrape-time gauges read from. */
export interface ProxyMetricSources {
  queueDepth(): Promise<PoolCount[]>;
  parkedPolls(): number;
  agents(): Promise<AgentView[]>;
}

/** The proxy's Prometheus metrics, served at `GET /metrics`. */
export interface ProxyMetrics {
  readonly registry: Registry;
  /** Leases the reaper found expired (each went back to queued or ended failed). */
  readonly expiries: Counter;
  /** HTTP answers by route and status code. */
  readonly requests: Counter<'route' | 'status'>;
}

/**
 * Builds the registry (composition root only). Queue depth, parked polls and
 * agents online are gauges computed when Prometheus scrapes, so the hot path
 * pays nothing for them; a failing store read leaves them at their last value.
 */
export function createProxyMetrics(sources: ProxyMetricSources): ProxyMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  new Gauge({
    name: 'outpost_proxy_queue_depth',
    help: 'Open jobs per pool and status (queued, leased)',
    labelNames: ['pool', 'status'],
    registers,
    async collect() {
      const rows = await sources.queueDepth().catch(() => null);
      if (!rows) return;
      this.reset();
      for (const r of rows) this.set({ pool: r.pool, status: r.status }, r.n);
    },
  });
  new Gauge({
    name: 'outpost_proxy_parked_polls',
    help: 'Lease long-polls waiting for work on this replica',
    registers,
    collect() {
      this.set(sources.parkedPolls());
    },
  });
  new Gauge({
    name: 'outpost_proxy_agents_online',
    help: 'Agents seen within the presence window, per pool',
    labelNames: ['pool'],
    registers,
    async collect() {
      const agents = await sources.agents().catch(() => null);
      if (!agents) return;
      this.reset();
      const online = new Map<string, number>();
      for (const a of agents) online.set(a.pool, (online.get(a.pool) ?? 0) + (a.status === 'online' ? 1 : 0));
      for (const [pool, n] of online) this.set({ pool }, n);
    },
  });
  return {
    registry,
    expiries: new Counter({ name: 'outpost_proxy_lease_expiries_total', help: 'Leases expired by the reaper', registers }),
    requests: new Counter({ name: 'outpost_proxy_http_requests_total', help: 'HTTP answers by route and status', labelNames: ['route', 'status'], registers }),
  };
}
