import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The agent's Prometheus metrics, served at `GET /metrics` on the health
 * port. One registry per agent (tests run several agents in one process).
 */
export interface AgentMetrics {
  readonly registry: Registry;
  /** Jobs received in lease answers. */
  readonly leases: Counter;
  /** Lease (long-poll) calls by outcome: ok | error. */
  readonly polls: Counter<'outcome'>;
  /** Jobs running now: read from the lease loop when scraped (`sources.running`), never counted per job. */
  readonly inFlight: Gauge;
  /** Job run time by type and outcome: succeeded | failed | stopped. */
  readonly jobDuration: Histogram<'type' | 'outcome'>;
  /** Lease renewals by status: ok | lost | cancelled, and `error` for a failed heartbeat call. */
  readonly heartbeats: Counter<'status'>;
  /** Leases this agent lost by reason: lost | cancelled | fenced. */
  readonly leaseLosses: Counter<'reason'>;
  /** Backoff waits by the call that failed: lease | results | output. */
  readonly backoffs: Counter<'call'>;
}

/** Where gauges read their value when scraped (instead of an update per job on the hot path). */
export interface AgentMetricSources {
  /** Jobs running now (the lease loop's count). Default: the gauge stays 0. */
  running?: () => number;
}

/** Builds the registry and every metric (called from the composition root only). */
export function createAgentMetrics(labels: { agentId: string; version?: string }, sources: AgentMetricSources = {}): AgentMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ agent_id: labels.agentId });
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  if (labels.version !== undefined) {
    // Always 1; the version is the label (compare against the proxy's outpost_proxy_agents_by_version).
    new Gauge({ name: 'outpost_agent_build_info', help: 'The running agent version (value 1)', labelNames: ['version'], registers }).set({ version: labels.version.slice(0, 64) }, 1);
  }
  return {
    registry,
    leases: new Counter({ name: 'outpost_agent_leases_total', help: 'Jobs received in lease answers', registers }),
    polls: new Counter({ name: 'outpost_agent_polls_total', help: 'Lease calls by outcome', labelNames: ['outcome'], registers }),
    inFlight: new Gauge({
      name: 'outpost_agent_jobs_in_flight',
      help: 'Jobs running now',
      registers,
      collect() {
        if (sources.running) this.set(sources.running());
      },
    }),
    jobDuration: new Histogram({
      name: 'outpost_agent_job_duration_seconds',
      help: 'Job run time by type and outcome',
      labelNames: ['type', 'outcome'],
      buckets: [0.001, 0.005, 0.025, 0.1, 0.5, 1, 5, 30, 120, 600],
      registers,
    }),
    heartbeats: new Counter({ name: 'outpost_agent_heartbeats_total', help: 'Lease renewals by status', labelNames: ['status'], registers }),
    leaseLosses: new Counter({ name: 'outpost_agent_lease_losses_total', help: 'Leases lost by reason', labelNames: ['reason'], registers }),
    backoffs: new Counter({ name: 'outpost_agent_backoffs_total', help: 'Backoff waits by failing call', labelNames: ['call'], registers }),
  };
}
