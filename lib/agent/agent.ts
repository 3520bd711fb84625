import { hostname as osHostname } from 'node:os';
import type { AgentConfig } from '../config/agent.js';
import { readSecretFile } from '../config/secrets.js';
import type { Connector, ConnectorFactory } from '../connectors/types.js';
import { createLogger, type Logger } from '../log/index.js';
import { sleep, systemClock, type Clock } from '../util/clock.js';
import { toWireError } from '../util/errors.js';
import type { LifecycleState } from '../util/lifecycle.js';
import { ProxyApi } from './api.js';
import { loadConnectorKinds } from './connector-kinds.js';
import { buildConnectors, closeConnectors } from './connectors.js';
import { createDispatcher } from './dispatch.js';
import { SecretOpener } from './secrets.js';
import { HealthServer, Presence } from './health.js';
import { HttpTransport } from './http.js';
import { LeaseKeeper } from './leases.js';
import { LeaseLoop } from './loop.js';
import { ResultReporter } from './reporter.js';
import { releaseLeases } from './release.js';
import { JobRunner } from './runner.js';
import { LeaseCargo } from './carry.js';
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
  /** Results answered on a lease request instead of a `results` call. */
  carriedResults: number;
  /** Heartbeats that rode on a lease request instead of a call of their own. */
  carriedRenewals: number;
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

/**
 * Bounds on the drain's last steps after the grace, so that with the default
 * 20 s grace the process exits before Kubernetes' SIGKILL at 30 s even if the
 * proxy hangs: unwind (1 s), then release retried with backoff for up to 5 s
 * alongside the result flush (3 s): 26 s in all.
 */
const UNWIND_MS = 1000;
const RELEASE_WINDOW_MS = 5000;
const FLUSH_MS = 3000;
/** Each goodbye call (draining, offline) waits at most this long: 2 s in all, inside the 30 s budget above. */
const GOODBYE_TIMEOUT_MS = 1000;

/** Builds the agent from its config: the only place (with bin/agent.ts) that builds objects. */
export function createAgent(config: AgentConfig, deps: AgentDeps = {}): Agent {
  const clock = deps.clock ?? systemClock;
  const agentId = config.agentId;
  const log = (deps.log ?? createLogger(config.log)).child({ component: 'agent', agentId });
  // Filled by start(), once the configured kinds' connector modules are loaded.
  const connectors = new Map<string, Connector>();
  const presence = new Presence(clock, config.presenceMs);
  const transport = new HttpTransport({ caFile: config.proxy.caFile, insecureSkipTlsVerify: config.proxy.insecureSkipTlsVerify, env: deps.env });
  const api = new ProxyApi(transport, { baseUrl: config.proxy.url, token: config.proxy.token, leaseTimeoutSlackMs: config.proxy.leaseTimeoutSlackMs, onContact: () => presence.contact() });
  // The in-flight gauge reads the loop's count when scraped (the loop is built below).
  const metrics = createAgentMetrics({ agentId, version: AGENT_VERSION }, { running: () => loop.running });
  const keeper = new LeaseKeeper({ api, clock, log, metrics }, { agentId, heartbeatFraction: config.heartbeat.fraction, jitter: config.heartbeat.jitter });
  const reporter = new ResultReporter({ api, clock, log, metrics }, { agentId });
  // The pool's sealing key opens sealed payload secrets; libsodium loads on the first job that has one.
  const opener = new SecretOpener(config.sealing?.privateKey ?? null);
  const unsealedAllowed = new Set(Object.entries(config.resources).filter(([, r]) => r.allowUnsealedSecrets === true).map(([name]) => name));
  const dispatch = createDispatcher({ connectors, clock, agentId, opener, unsealedAllowed });
  const runner = new JobRunner({ api, clock, log, keeper, reporter, dispatch, metrics });
  const loop = new LeaseLoop(
    { api, clock, log, metrics, run: (job, at) => runner.run(job, at), onContact: () => presence.contact(), cargo: new LeaseCargo({ reporter, keeper, clock, log }) },
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
    // Presence: the operator sees `draining` at once, then `offline` below (not 90 s of "online").
    if (wasRunning) await goodbye('draining');
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
    if (wasRunning) await goodbye('offline');
    await health.stop();
    await closeConnectors(connectors, (name, err) => log.warn('closing a connector failed', { resource: name, error: toWireError(err).message }));
    transport.destroy();
    state = 'stopped';
    if (wasRunning) log.info('stopped');
  }

  /** Best effort, bounded: a proxy that is down or older (404) must not hold up the shutdown. */
  async function goodbye(status: 'draining' | 'offline'): Promise<void> {
    try {
      await api.goodbye({ agentId, status }, GOODBYE_TIMEOUT_MS);
    } catch (err) {
      log.debug('could not tell the integration-proxy this agent is ' + status, { error: toWireError(err).message });
    }
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
      carriedResults: reporter.carried,
      carriedRenewals: keeper.carriedRenewals,
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
        // `via forward proxy HOST:PORT` or `direct`: which path the agent's calls take.
        route: transport.routeLabel(config.proxy.url).trim() || 'direct',
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

/** One connector per configured resource, loading only the connector modules of the configured kinds (also used by check.ts). */
export async function buildResourceConnectors(config: AgentConfig, deps: AgentDeps, log: Logger, clock: Clock): Promise<Map<string, Connector>> {
  const kinds = deps.connectorKinds ?? (await loadConnectorKinds(Object.values(config.resources).map((r) => r.kind)));
  return buildConnectors(config.resources, kinds, { log, clock, readSecret: (path) => readSecretFile(path, 'resource secret') });
}
