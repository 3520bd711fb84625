import { hostname as osHostname } from 'node:os';
import type { AgentConfig } from '../config/agent.js';
import { readSecretFile } from '../config/secrets.js';
import type { Connector, ConnectorFactory } from '../connectors/types.js';
import { createLogger, type Logger } from '../log/index.js';
import { sleep, systemClock, type Clock } from '../util/clock.js';
import { OutpostError, toWireError } from '../util/errors.js';
import type { LifecycleState } from '../util/lifecycle.js';
import { ProxyApi } from './api.js';
import { loadConnectorKinds } from './connector-kinds.js';
import { buildConnectors, closeConnectors } from './connectors.js';
import { createDispatcher } from './dispatch.js';
import { HealthServer, Presence } from './health.js';
import { HttpTransport } from './http.js';
import { LeaseKeeper } from './leases.js';
import { LeaseLoop } from './loop.js';
import { ResultReporter } from './reporter.js';
import { releaseLeases } from './release.js';
import { JobRunner } from './runner.js';
import { AGENT_VERSION } from './version.js';
import { createAgentMetrics } from './metrics.js';

/** What `createAgent` may be given instead of the defaults. */
export interface AgentDeps {
  /** Default: the system clock. */
  clock?: Clock;
  /** Default: a JSON/pretty logger per `config.log`. */
  log?: Logger;
  /** Connector factories by kind. Default: the built-in ones, loaded for the configured kinds only (CONNECTOR_LOADERS). */
  connectorKinds?: Record<string, ConnectorFactory>;
  /** Reported to the proxy. Default: os.hostname(). */
  hostname?: string;
  /** Environment for HTTPS_PROXY/NO_PROXY/NODE_EXTRA_CA_CERTS. Default process.env. */
  env?: NodeJS.ProcessEnv;
}

/** Counters for tests, benchmarks and `/readyz`. */
export interface AgentStats {
  running: number;
  held: number;
  polls: number;
  heartbeats: number;
  resultCalls: number;
  requests: Record<string, number>;
}

/** A running agent. */
export interface Agent {
  readonly agentId: string;
  readonly state: LifecycleState;
  /** The health server's bound port (after `start`). */
  readonly healthPort: number;
  stats(): AgentStats;
  start(): Promise<void>;
  /**
   * Drains and stops; idempotent. A second call with `{ skipWait: true }`
   * (the second signal) cuts the grace period short.
   */
  stop(opts?: { skipWait?: boolean }): Promise<void>;
}

/** "Has talked to the proxy within the presence window" (DESIGN: 90 s). */
const PRESENCE_MS = 90_000;
/**
 * Bounds on the drain's last steps after the grace, so that with the default
 * 20 s grace the process exits before Kubernetes' SIGKILL at 30 s even if the
 * proxy hangs: unwind (1 s), then release retried with backoff for up to 5 s
 * alongside the result flush (3 s): 26 s in all.
 */
const UNWIND_MS = 1000;
const RELEASE_WINDOW_MS = 5000;
const FLUSH_MS = 3000;

/** Builds the agent from its config: the only place (with bin/agent.ts) that builds objects. */
export function createAgent(config: AgentConfig, deps: AgentDeps = {}): Agent {
  const clock = deps.clock ?? systemClock;
  const agentId = config.agentId;
  const log = (deps.log ?? createLogger({ level: config.log.level, format: config.log.format })).child({ component: 'agent', agentId });
  // Filled by start(), once the configured kinds' connector modules are loaded.
  const connectors = new Map<string, Connector>();
  const presence = new Presence(clock, PRESENCE_MS);
  const transport = new HttpTransport({ caFile: config.proxy.caFile, insecureSkipTlsVerify: config.proxy.insecureSkipTlsVerify, env: deps.env });
  const api = new ProxyApi(transport, { baseUrl: config.proxy.url, token: config.proxy.token, onContact: () => presence.contact() });
  const metrics = createAgentMetrics({ agentId });
  const keeper = new LeaseKeeper({ api, clock, log, metrics }, { agentId });
  const reporter = new ResultReporter({ api, clock, log, metrics }, { agentId });
  const dispatch = createDispatcher({ connectors, clock, agentId });
  const runner = new JobRunner({ api, clock, log, keeper, reporter, dispatch, metrics });
  const loop = new LeaseLoop(
    { api, clock, log, metrics, run: (job, at) => runner.run(job, at), onContact: () => presence.contact() },
    {
      agentId,
      hostname: deps.hostname ?? osHostname(),
      version: AGENT_VERSION,
      resources: Object.keys(config.resources),
      concurrency: config.concurrency,
      waitMs: config.proxy.waitMs,
    },
  );
  let state: LifecycleState = 'idle';
  const health = new HealthServer(
    {
      state: () => state,
      ready: () => presence.ready(loop.pollOpenSinceMs),
      details: () => ({ agentId, running: loop.running }),
      metrics: async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() }),
    },
    config.health,
  );
  const skipWait = new AbortController();
  let stopping: Promise<void> | undefined;
  let starting = false;

  async function drain(): Promise<void> {
    const wasRunning = state === 'running';
    state = 'draining';
    if (wasRunning) log.info('draining: no new leases', { running: loop.running, graceMs: config.shutdownGraceMs });
    await loop.stop();
    await within(loop.idle(), config.shutdownGraceMs, skipWait.signal);
    // What still runs is stopped (`shutdown`) and given back, spending no attempt; its result is never
    // reported. The release goes out once the jobs unwound (at most UNWIND_MS), so that another agent
    // does not start a job this one is still stopping.
    const leftovers = keeper.running().flatMap((l) => l.release() ?? []);
    await within(loop.idle(), UNWIND_MS);
    await Promise.all([
      leftovers.length > 0 ? releaseLeases({ api, clock, log }, leftovers, { agentId, windowMs: RELEASE_WINDOW_MS }) : undefined,
      within(reporter.flush(), FLUSH_MS),
    ]);
    keeper.stop();
    reporter.stop();
    await health.stop();
    await closeConnectors(connectors, (name, err) => log.warn('closing a connector failed', { resource: name, error: toWireError(err).message }));
    transport.destroy();
    state = 'stopped';
    if (wasRunning) log.info('stopped');
  }

  /** Waits for `work`, at most `ms` (or until `cut` aborts); leaves no timer behind. */
  async function within(work: Promise<unknown>, ms: number, cut?: AbortSignal): Promise<void> {
    const timer = new AbortController();
    const signal = cut ? AbortSignal.any([cut, timer.signal]) : timer.signal;
    try {
      await Promise.race([work, sleep(clock, ms, signal).catch(() => undefined)]);
    } finally {
      timer.abort();
    }
  }

  return {
    agentId,
    get state() {
      return state;
    },
    get healthPort() {
      return health.port;
    },
    stats: () => ({
      running: loop.running,
      held: keeper.size,
      polls: loop.polls,
      heartbeats: keeper.heartbeats,
      resultCalls: reporter.calls,
      requests: { ...api.requestCounts },
    }),
    async start() {
      if (state !== 'idle' || starting) return;
      starting = true;
      try {
        // Resource config errors (config_error naming the key) surface here, before any lease.
        for (const [name, c] of await buildResourceConnectors(config, deps, log, clock)) connectors.set(name, c);
      } catch (err) {
        starting = false;
        throw err;
      }
      if (stopping) return;
      if (config.proxy.insecureSkipTlsVerify) {
        log.warn('TLS verification of the integration-proxy is OFF (proxy.insecureSkipTlsVerify); never use this in production');
      }
      await health.start();
      state = 'running';
      loop.start();
      log.info('agent started', {
        version: AGENT_VERSION,
        proxy: config.proxy.url,
        concurrency: config.concurrency,
        resources: Object.keys(config.resources),
        healthPort: health.port,
      });
    },
    stop(opts = {}) {
      if (opts.skipWait) skipWait.abort();
      stopping ??= drain();
      return stopping;
    },
  };
}

/** One line of `bin/agent check`. */
export interface CheckRow {
  target: string;
  ok: boolean;
  latencyMs: number;
  detail: string;
}

/**
 * `bin/agent check`: reaches the proxy (through the corporate proxy if set)
 * with an empty heartbeat, which authenticates without taking work, then
 * each resource through its connector's `checkResource`.
 */
export async function checkAgent(config: AgentConfig, deps: AgentDeps = {}, timeoutMs = 10_000): Promise<CheckRow[]> {
  const clock = deps.clock ?? systemClock;
  const log = deps.log ?? createLogger({ level: 'error', format: config.log.format });
  const rows: CheckRow[] = [];
  const transport = new HttpTransport({ caFile: config.proxy.caFile, insecureSkipTlsVerify: config.proxy.insecureSkipTlsVerify, env: deps.env });
  const api = new ProxyApi(transport, { baseUrl: config.proxy.url, token: config.proxy.token, callTimeoutMs: timeoutMs });
  const timed = async (target: string, fn: () => Promise<string>) => {
    const t0 = clock.now();
    try {
      const detail = await fn();
      rows.push({ target, ok: true, latencyMs: clock.now() - t0, detail });
    } catch (err) {
      const w = toWireError(err);
      rows.push({ target, ok: false, latencyMs: clock.now() - t0, detail: `${w.code}: ${w.message}` });
    }
  };
  await timed(`proxy ${config.proxy.url}`, async () => {
    await api.heartbeat({ agentId: config.agentId, leases: [] }, AbortSignal.timeout(timeoutMs));
    return 'reachable, token accepted';
  });
  transport.destroy();
  let connectors = new Map<string, Connector>();
  await timed('config resources', async () => {
    connectors = await buildResourceConnectors(config, deps, log, clock);
    return `${connectors.size} resource(s)`;
  });
  for (const [name, c] of connectors) {
    await timed(`resource ${name} (${c.kind})`, async () => {
      const ctx = { signal: AbortSignal.timeout(timeoutMs), log, writePage: async () => {} };
      const r = await c.checkResource({}, ctx);
      if (!r.ok) throw new OutpostError('unreachable', JSON.stringify(r.details).slice(0, 300));
      return 'ok';
    });
  }
  await closeConnectors(connectors, () => undefined);
  return rows;
}

/** One connector per configured resource, loading only the connector modules of the configured kinds. */
async function buildResourceConnectors(config: AgentConfig, deps: AgentDeps, log: Logger, clock: Clock): Promise<Map<string, Connector>> {
  const kinds = deps.connectorKinds ?? (await loadConnectorKinds(Object.values(config.resources).map((r) => r.kind)));
  return buildConnectors(config.resources, kinds, { log, clock, readSecret: (path) => readSecretFile(path, 'resource secret') });
}
