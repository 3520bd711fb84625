import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { PoolCount } from './store/stats.js';
import type { QuotaName } from './store/jobs.js';

/** Where the scrape-time gauges read from. */
export interface ProxyMetricSources {
  queueDepth(): Promise<PoolCount[]>;
  parkedPolls(): number;
  /** Agents online per pool. */
  agentsOnline(): Promise<Array<{ pool: string; n: number }>>;
  /** Stored output bytes per pool. */
  outputBytes?: () => Promise<Array<{ pool: string; n: number }>>;
  /** Agents per pool and status, and per pool and version (AgentStore.census). */
  agentCensus?: () => Promise<{ byStatus: Array<{ pool: string; status: string; n: number }>; byVersion: Array<{ pool: string; version: string; n: number }> }>;
}

/** The proxy's Prometheus metrics, served at `GET /metrics`. */
export interface ProxyMetrics {
  readonly registry: Registry;
  /** Leases the reaper found expired (each went back to queued or ended failed). */
  readonly expiries: Counter;
  /** HTTP answers by route and status code. */
  readonly requests: Counter<'route' | 'status'>;
  /** Requests refused by a quota (429 / 413), by quota. */
  readonly quotaRefusals: Counter<'quota'>;
  /** Rows deleted by the retention sweep, by kind (jobs, agents). */
  readonly retentionDeleted: Counter<'kind'>;
  /** Queued jobs that reached their expiry and ended failed/expired. */
  readonly jobsExpired: Counter;
}

/**
 * `fn` with one call in flight at a time, shared by concurrent callers: 16
 * scrapes at once cost one set of queries, and no answer is older than the
 * scrape that asked (no cache beyond the call).
 */
function shared<T>(fn: () => Promise<T>): () => Promise<T> {
  let running: Promise<T> | undefined;
  return () => {
    running ??= fn().finally(() => (running = undefined));
    return running;
  };
}

/**
 * Builds the registry (composition root only). Queue depth, parked polls and
 * agents online are gauges computed when Prometheus scrapes, from indexed
 * counts (see StatsStore), shared by concurrent scrapes, so a scrape is
 * cheap at any store size and the hot path pays nothing; a failing store read
 * leaves them at their last value.
 */
export function createProxyMetrics(sources: ProxyMetricSources): ProxyMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const queueDepth = shared(() => sources.queueDepth());
  const agentsOnline = shared(() => sources.agentsOnline());
  const outputBytes = sources.outputBytes ? shared(sources.outputBytes) : null;
  new Gauge({
    name: 'outpost_proxy_queue_depth',
    help: 'Open jobs per pool and status (queued, leased)',
    labelNames: ['pool', 'status'],
    registers,
    async collect() {
      const rows = await queueDepth().catch(() => null);
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
      const rows = await agentsOnline().catch(() => null);
      if (!rows) return;
      this.reset();
      for (const r of rows) this.set({ pool: r.pool }, r.n);
    },
  });
  if (sources.agentCensus) {
    const census = shared(sources.agentCensus);
    new Gauge({
      name: 'outpost_proxy_agents',
      help: 'Agents per pool and status: online, draining (said goodbye), stale (missed its expected contact), offline',
      labelNames: ['pool', 'status'],
      registers,
      async collect() {
        const c = await census().catch(() => null);
        if (!c) return;
        this.reset();
        for (const r of c.byStatus) this.set({ pool: r.pool, status: r.status }, r.n);
      },
    });
    new Gauge({
      name: 'outpost_proxy_agents_by_version',
      help: 'Agents not offline per pool and reported version (unparseable: invalid; beyond 20 versions per pool: other)',
      labelNames: ['pool', 'version'],
      registers,
      async collect() {
        const c = await census().catch(() => null);
        if (!c) return;
        this.reset();
        for (const r of c.byVersion) this.set({ pool: r.pool, version: r.version }, r.n);
      },
    });
  }
  if (outputBytes) {
    new Gauge({
      name: 'outpost_proxy_output_bytes',
      help: 'Output bytes stored per pool (checked against quotas.outputBytesPerPool)',
      labelNames: ['pool'],
      registers,
      async collect() {
        const rows = await outputBytes().catch(() => null);
        if (!rows) return;
        this.reset();
        for (const r of rows) this.set({ pool: r.pool }, r.n);
      },
    });
  }
  const quotaRefusals = new Counter({
    name: 'outpost_proxy_quota_refusals_total',
    help: 'Requests refused by a quota (429 rate_limited or 413 too_large), by quota',
    labelNames: ['quota'],
    registers,
  });
  // Every quota shows up at 0 from the first scrape, so alerts can use rate() at once.
  for (const q of QUOTAS) quotaRefusals.inc({ quota: q }, 0);
  return {
    registry,
    expiries: new Counter({ name: 'outpost_proxy_lease_expiries_total', help: 'Leases expired by the reaper', registers }),
    requests: new Counter({ name: 'outpost_proxy_http_requests_total', help: 'HTTP answers by route and status', labelNames: ['route', 'status'], registers }),
    quotaRefusals,
    retentionDeleted: new Counter({ name: 'outpost_proxy_retention_deleted_total', help: 'Rows deleted by the retention sweep, by kind', labelNames: ['kind'], registers }),
    jobsExpired: new Counter({ name: 'outpost_proxy_jobs_expired_total', help: 'Queued jobs that reached expiresAt and ended failed/expired', registers }),
  };
}

const QUOTAS: readonly QuotaName[] = [
  'agents_per_pool',
  'agent_info_bytes',
  'parked_polls_per_pool',
  'output_bytes_per_job',
  'output_bytes_per_pool',
  'queued_jobs_per_pool',
  'requests_per_token',
];
