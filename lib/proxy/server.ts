import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Fastify, { type FastifyInstance } from 'fastify';
import type { ProxyConfig } from '../config/proxy.js';
import { systemClock, type Clock } from '../util/clock.js';
import { OutpostError } from '../util/errors.js';
import type { LifecycleState } from '../util/lifecycle.js';
import { createLogger, type Logger } from '../log/index.js';
import { LogThrottle } from '../log/throttle.js';
import { isValid } from '../protocol/validate.js';
import { PoolName, PublicKey } from '../protocol/schemas.js';
import { closeDb, openDb, type Db } from './store/db.js';
import { migrate } from './store/schema.js';
import type { StoreEvents } from './store/events.js';
import { LeaseStore } from './store/leases.js';
import { JobStore } from './store/jobs.js';
import { OutputStore } from './store/output.js';
import { TokenStore, type TokenInfo, type TokenRole } from './store/tokens.js';
import { PoolStore, type PoolKey } from './store/pools.js';
import { AgentStore } from './store/agents.js';
import { Waiters } from './waiters.js';
import { JobWatch } from './watch.js';
import { ReplicaListener } from './listener.js';
import { Authenticator } from './http/auth.js';
import { registerRoutes } from './http/app.js';
import { fastifyOptions, headersTimeoutMs } from './http/server-options.js';
import { StatsStore } from './store/stats.js';
import { createProxyMetrics } from './metrics.js';
import { RetentionStore } from './store/retention.js';
import { QueuedQuota } from './store/queued.js';
import type { QuotaName } from './store/jobs.js';
import { Sweeper } from './sweeper.js';
import { Checkpointer } from './store/checkpointer.js';
import { PresenceLog } from './presence-log.js';
import { registerRateLimit } from './http/rate-limit.js';
import { LeaseExpiry } from './expiry.js';

/** The reference integration-proxy (DESIGN "integration-proxy"). */
export interface ProxyServer {
  /** idle | running | draining | stopped */
  readonly state: LifecycleState;
  /** e.g. http://127.0.0.1:41234 (https when TLS is configured); valid after start(). */
  readonly url: string;
  /** Runs migrations, starts the reaper and listens. */
  start(): Promise<void>;
  /** Idempotent: answers parked polls with `{jobs: []}`, closes the server and the store. */
  stop(): Promise<void>;
  /** Makes a pool token (as `token create` does); returns it once. Works before start(). `admin: true` is role admin. */
  createToken(opts: { pool: string; admin?: boolean; role?: TokenRole; expiresAtMs?: number | null }): Promise<string>;
  /** As createToken, with the token's id. */
  issueToken(opts: { pool: string; role?: TokenRole; expiresAtMs?: number | null }): Promise<{ id: string; token: string }>;
  /** Stored tokens (never a secret or its hash), of one pool or all (`token list`). Works before start(). */
  listTokens(opts?: { pool?: string }): Promise<TokenInfo[]>;
  /** Revokes a token by id (`token revoke`): refused by every replica within a second. Works before start(). */
  revokeToken(id: string): Promise<'revoked' | 'already_revoked' | 'not_found'>;
  /** Sets a pool's public sealing key (`pool set-key`; the key is checked by the caller). Works before start(). */
  setPoolKey(pool: string, publicKey: string): Promise<PoolKey>;
}

/** Optional collaborators; defaults are the system clock and a logger from `config.log`. */
export interface ProxyServerDeps {
  clock?: Clock;
  log?: Logger;
}

/**
 * How long stop() lets requests in flight finish before it closes every connection. Without it a
 * client that connected and sent nothing, or half a request, held stop() for good (a pooled
 * connection that a client opened and never used does that). Real time, not the injected clock:
 * it bounds socket I/O, like Node's own timeouts.
 */
const FORCE_CLOSE_AFTER_MS = 5000;
/** Lease-expiry lines per reaper pass; a mass expiry (a zone gone) gets one summary line for the rest. */
const MAX_EXPIRY_LINES = 100;

/** The composition root of the proxy: the only place in lib/proxy that builds objects. */
export function createProxyServer(config: ProxyConfig, deps: ProxyServerDeps = {}): ProxyServer {
  const clock = deps.clock ?? systemClock;
  const log = deps.log ?? createLogger({ ...config.log, defaultMeta: { component: 'proxy' } });
  const replicaId = randomBytes(6).toString('hex');
  let state: LifecycleState = 'idle';
  let url = '';
  let db: Db | undefined;
  let stores: ReturnType<typeof buildStores> | undefined;
  let app: FastifyInstance | undefined;
  let listener: ReplicaListener | undefined;
  let stopping: Promise<void> | undefined;

  const watch = new JobWatch({ clock });
  const waiters = new Waiters(
    { recheckMs: config.wakeRecheckMs },
    { clock, log, recheck: (pool, cap) => (stores ? stores.jobs.availableNow(pool, cap) : Promise.resolve([])) },
  );
  const metrics = createProxyMetrics({
    queueDepth: () => (stores ? stores.stats.queueDepth() : Promise.resolve([])),
    parkedPolls: () => waiters.parked,
    agentsOnline: () => (stores ? stores.agents.onlineCounts() : Promise.resolve([])),
    outputBytes: () => (stores ? stores.stats.outputBytes() : Promise.resolve([])),
    agentCensus: () => (stores ? stores.agents.census() : Promise.resolve({ byStatus: [], byVersion: [] })),
  });
  // Each refusal is counted; logged at most once a minute per quota, with how many since the last line.
  const quotaLines = new LogThrottle(clock);
  const onQuota = (quota: QuotaName) => {
    metrics.quotaRefusals.inc({ quota });
    const count = quotaLines.hit(quota);
    if (count !== undefined) log.info('quota refused a request', { quota, count });
  };
  const { quotas, retention } = config;
  let sweeper: Sweeper | undefined;
  let checkpointer: Checkpointer | undefined;
  let presenceLog: PresenceLog | undefined;
  const events: StoreEvents = {
    available: (pool, resources) => waiters.available(pool, resources),
    availableAt: (pool, resource, atMs) => waiters.availableAt(pool, resource, atMs),
    changed: (id) => watch.changed(id),
  };

  function buildStores(d: Db) {
    return {
      leases: new LeaseStore({ leaseTtlMs: config.leaseTtlMs }, { db: d, clock, events, replicaId, onDeadline: (atMs) => expiry.deadline(atMs) }),
      jobs: new JobStore({
        db: d, clock, events, replicaId, onQuota, queueTimeoutMs: config.queueTimeoutMs,
        queued: new QueuedQuota({ limit: quotas.queuedJobsPerPool }, { db: d, clock }),
      }),
      output: new OutputStore({ db: d, onQuota }, { maxBytesPerJob: quotas.outputBytesPerJob, maxBytesPerPool: quotas.outputBytesPerPool }),
      retention: new RetentionStore({ db: d, clock }),
      tokens: new TokenStore({ db: d, clock }),
      pools: new PoolStore({ db: d, clock }),
      agents: new AgentStore(
        { presenceMs: config.presenceMs, maxAgentsPerPool: quotas.agentsPerPool, maxInfoBytes: quotas.agentInfoBytes, versions: config.agents },
        { db: d, clock, onQuota },
      ),
      stats: new StatsStore({ db: d }),
    };
  }

  async function openStore(): Promise<NonNullable<typeof stores>> {
    if (!stores) {
      const d = await openDb(config.store.url, log);
      db = d;
      await migrate(d);
      stores = buildStores(d);
    }
    return stores;
  }

  // Leases expire at their deadline (one timer at the earliest), the reaper period is the backstop.
  const expiry = new LeaseExpiry(
    { backstopMs: config.reaperIntervalMs },
    {
      clock, log,
      reap: async () => {
        if (!stores || state !== 'running') return 0;
        const n = await stores.leases.reap((expired) => {
          // One line per expiry (which job, which agent, which attempt), bounded per pass.
          for (const e of expired.slice(0, MAX_EXPIRY_LINES)) log.info('lease expired', { ...e, outcome: e.requeued ? 'requeued' : 'failed' });
          if (expired.length > MAX_EXPIRY_LINES) log.info('more leases expired', { count: expired.length - MAX_EXPIRY_LINES });
        });
        if (n) metrics.expiries.inc(n);
        return n;
      },
      nextExpiryAt: () => (stores && state === 'running' ? stores.leases.nextExpiryAt() : Promise.resolve(null)),
    },
  );

  async function start(): Promise<void> {
    if (state !== 'idle') throw new OutpostError('conflict', `cannot start a proxy that is ${state}`);
    try {
      const s = await openStore();
      if (!db) throw new OutpostError('internal', 'the store is not open after openStore()');
      const openDbNow = db;
      const tls = config.tls.certFile && config.tls.keyFile
        ? { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) }
        : null;
      const server = Fastify(fastifyOptions(config, tls)) as unknown as FastifyInstance;
      app = server;
      server.server.headersTimeout = headersTimeoutMs(config);
      const auth = new Authenticator({ adminToken: config.adminToken }, { tokens: s.tokens, clock, log });
      // Per-token request rate: checked after authentication (onRequest), before the body is read (rate-limit.ts).
      await registerRateLimit(server, { max: quotas.requestsPerToken, timeWindowMs: quotas.requestWindowMs }, { onExceeded: () => onQuota('requests_per_token') });
      registerRoutes(server, {
        maxWaitMs: config.maxWaitMs, maxParkedPollsPerPool: quotas.parkedPollsPerPool, acceptUnknownTypes: config.acceptUnknownTypes,
        agentVersions: config.agents, leaseTtlMs: config.leaseTtlMs,
      }, {
        clock, log, db: openDbNow, auth, ...s,
        waiters, watch, metrics, state: () => state,
      });
      if (openDbNow.dialect === 'postgres') {
        // pg is loaded only for a PostgreSQL store.
        const { default: pg } = await import('pg');
        listener = new ReplicaListener({
          clock, log, replicaId,
          connect: () => new pg.Client({ connectionString: config.store.url }),
          available: (pool, resources) => waiters.available(pool, resources),
          tokensChanged: () => auth.invalidate(),
        });
        await listener.start();
      }
      await server.listen({ host: config.host, port: config.port });
      const addr = server.server.address();
      const port = typeof addr === 'object' && addr ? addr.port : config.port;
      const host = config.host === '0.0.0.0' ? '127.0.0.1' : config.host === '::' ? '[::1]' : config.host.includes(':') ? `[${config.host}]` : config.host;
      url = `${tls ? 'https' : 'http'}://${host}:${port}`;
      state = 'running';
      waiters.start();
      expiry.start();
      if (openDbNow.dialect === 'sqlite') {
        checkpointer = new Checkpointer({}, { conn: openDbNow.sqlite, log });
        checkpointer.start();
      }
      sweeper = new Sweeper(retention, {
        clock, log,
        expireQueued: async (batch) => {
          const n = (await s.jobs.expireQueued(batch)).length;
          metrics.jobsExpired.inc(n);
          return n;
        },
        deleteFinished: async (olderThanMs, batch) => s.retention.deleteFinished(await s.jobs.pools(), olderThanMs, batch),
        deleteOfflineAgents: (olderThanMs, batch) => s.agents.deleteOffline(olderThanMs, batch),
        swept: ({ jobs, agents }) => {
          metrics.retentionDeleted.inc({ kind: 'jobs' }, jobs);
          metrics.retentionDeleted.inc({ kind: 'agents' }, agents);
        },
      });
      sweeper.start();
      presenceLog = new PresenceLog({ clock, log, transitions: (since, now, limit) => s.agents.transitions(since, now, limit) });
      presenceLog.start();
      log.info('integration-proxy listening', { url, store: openDbNow.dialect });
    } catch (err) {
      await shutdown();
      throw err;
    }
  }

  async function shutdown(): Promise<void> {
    state = 'draining';
    waiters.stop();
    watch.stop();
    await sweeper?.stop();
    await presenceLog?.stop();
    await expiry.stop();
    const http = app?.server;
    const force = setTimeout(() => http?.closeAllConnections(), FORCE_CLOSE_AFTER_MS).unref();
    await app?.close().catch((err: unknown) => log.warn('closing the HTTP server failed', { err }));
    clearTimeout(force);
    await listener?.stop();
    await checkpointer?.stop();
    await (db ? closeDb(db) : Promise.resolve()).catch((err: unknown) => log.warn('closing the store failed', { err }));
    app = undefined;
    listener = undefined;
    checkpointer = undefined;
    stores = undefined;
    db = undefined;
    state = 'stopped';
  }

  /** The stores for an admin command; refused once the proxy stops. */
  async function adminStores(): Promise<NonNullable<typeof stores>> {
    if (state === 'stopped' || state === 'draining') throw new OutpostError('unavailable', 'the proxy is stopped');
    return openStore();
  }

  async function tokenStore(): Promise<TokenStore> {
    return (await adminStores()).tokens;
  }

  async function issueToken(opts: { pool: string; role?: TokenRole; expiresAtMs?: number | null }): Promise<{ id: string; token: string }> {
    if (!isValid(PoolName, opts.pool)) throw new OutpostError('invalid_request', 'pool: must match ^[A-Za-z0-9._-]+$ (1–128 characters)');
    return (await tokenStore()).create({ pool: opts.pool, role: opts.role ?? 'agent', expiresAtMs: opts.expiresAtMs ?? null });
  }

  return {
    get state() {
      return state;
    },
    get url() {
      return url;
    },
    start,
    stop() {
      if (!stopping) {
        stopping = state === 'idle' && !db ? Promise.resolve().then(() => { state = 'stopped'; }) : shutdown();
        void stopping.then(() => log.info('integration-proxy stopped'));
      }
      return stopping;
    },
    async createToken(opts) {
      const role = opts.role ?? (opts.admin ? 'admin' : 'agent');
      return (await issueToken({ pool: opts.pool, role, expiresAtMs: opts.expiresAtMs ?? null })).token;
    },
    issueToken,
    async listTokens(opts = {}) {
      return (await tokenStore()).list(opts.pool);
    },
    async revokeToken(id) {
      return (await tokenStore()).revoke(id);
    },
    async setPoolKey(pool, publicKey) {
      if (!isValid(PoolName, pool)) throw new OutpostError('invalid_request', 'pool: must match ^[A-Za-z0-9._-]+$ (1–128 characters)');
      if (!isValid(PublicKey, publicKey)) throw new OutpostError('invalid_request', 'publicKey: must be a base64 X25519 public key of 32 bytes (bin/agent keygen prints it)');
      return (await adminStores()).pools.setKey(pool, publicKey);
    },
  };
}
