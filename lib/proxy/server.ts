import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Fastify, { type FastifyInstance } from 'fastify';
import knexPkg from 'knex';
import pg from 'pg';
import type { ProxyConfig } from '../config/proxy.js';
import { systemClock, type Clock, type TimerHandle } from '../util/clock.js';
import { OutpostError } from '../util/errors.js';
import type { LifecycleState } from '../util/lifecycle.js';
import { createLogger, type Logger } from '../log/index.js';
import { isValid } from '../protocol/validate.js';
import { PoolName } from '../protocol/schemas.js';
import { dialectOf, knexConfig, migrate, type Db } from './store/db.js';
import type { StoreEvents } from './store/events.js';
import { LeaseStore } from './store/leases.js';
import { JobStore } from './store/jobs.js';
import { OutputStore } from './store/output.js';
import { TokenStore } from './store/tokens.js';
import { AgentStore } from './store/agents.js';
import { Waiters } from './waiters.js';
import { JobWatch } from './watch.js';
import { ReplicaListener } from './listener.js';
import { Authenticator } from './http/auth.js';
import { registerRoutes } from './http/app.js';
import { StatsStore } from './store/stats.js';
import { createProxyMetrics } from './metrics.js';

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
  /** Makes a pool token (as `token create` does); returns it once. Works before start(). */
  createToken(opts: { pool: string; admin?: boolean }): Promise<string>;
}

/** Optional collaborators; defaults are the system clock and a logger from `config.log`. */
export interface ProxyServerDeps {
  clock?: Clock;
  log?: Logger;
}

/** Per-request timeout of Node's HTTP server: must exceed any long poll. */
const MIN_REQUEST_TIMEOUT_MS = 120_000;

/** The composition root of the proxy: the only place in lib/proxy that builds objects. */
export function createProxyServer(config: ProxyConfig, deps: ProxyServerDeps = {}): ProxyServer {
  const clock = deps.clock ?? systemClock;
  const log = deps.log ?? createLogger({ level: config.log.level, format: config.log.format, defaultMeta: { component: 'proxy' } });
  const replicaId = randomBytes(6).toString('hex');
  let state: LifecycleState = 'idle';
  let url = '';
  let db: Db | undefined;
  let stores: ReturnType<typeof buildStores> | undefined;
  let app: FastifyInstance | undefined;
  let listener: ReplicaListener | undefined;
  let reaperTimer: TimerHandle | undefined;
  let stopping: Promise<void> | undefined;
  let reaping: Promise<unknown> = Promise.resolve();

  const watch = new JobWatch({ clock });
  const waiters = new Waiters(
    {},
    { clock, log, recheck: (pool, cap) => (stores ? stores.jobs.availableNow(pool, cap) : Promise.resolve([])) },
  );
  const metrics = createProxyMetrics({
    queueDepth: () => (stores ? stores.stats.queueDepth() : Promise.resolve([])),
    parkedPolls: () => waiters.parked,
    agents: () => (stores ? stores.agents.list(null) : Promise.resolve([])),
  });
  const events: StoreEvents = {
    available: (pool, resources) => waiters.available(pool, resources),
    availableAt: (pool, resource, atMs) => waiters.availableAt(pool, resource, atMs),
    changed: (id) => watch.changed(id),
  };

  function buildStores(d: Db) {
    return {
      leases: new LeaseStore({ leaseTtlMs: config.leaseTtlMs }, { db: d, clock, events, replicaId }),
      jobs: new JobStore({ db: d, clock, events, replicaId }),
      output: new OutputStore({ db: d }),
      tokens: new TokenStore({ db: d, clock }),
      agents: new AgentStore({ presenceMs: config.presenceMs }, { db: d, clock }),
      stats: new StatsStore({ db: d }),
    };
  }

  async function openStore(): Promise<NonNullable<typeof stores>> {
    if (!stores) {
      const d: Db = { knex: knexPkg(knexConfig(config.store.url, log)), dialect: dialectOf(config.store.url) };
      db = d;
      await migrate(d);
      stores = buildStores(d);
    }
    return stores;
  }

  function scheduleReaper(): void {
    reaperTimer = clock.setTimeout(() => {
      const s = stores;
      if (!s || state !== 'running') return;
      reaping = s.leases
        .reap()
        .then((n) => {
          if (!n) return;
          metrics.expiries.inc(n);
          log.info('expired leases returned', { count: n });
        })
        .catch((err: unknown) => log.error('reaper failed', { err }))
        .finally(() => state === 'running' && scheduleReaper());
    }, config.reaperIntervalMs);
  }

  async function start(): Promise<void> {
    if (state !== 'idle') throw new OutpostError('conflict', `cannot start a proxy that is ${state}`);
    try {
      const s = await openStore();
      const tls = config.tls.certFile && config.tls.keyFile
        ? { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) }
        : null;
      const server = Fastify({
        logger: false,
        bodyLimit: config.bodyLimitBytes,
        // Above the 60 s idle cut of common load balancers; Node's keep-alive race needs headersTimeout above it.
        keepAliveTimeout: 65_000,
        requestTimeout: Math.max(config.maxWaitMs + 30_000, MIN_REQUEST_TIMEOUT_MS),
        ...(tls ? { https: tls } : {}),
        // Unknown fields are errors, not silently dropped; nothing is coerced.
        ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false } },
        // Requests that arrive while closing get the protocol's 503 from our own hook, not fastify's body.
        return503OnClosing: false,
      }) as unknown as FastifyInstance;
      app = server;
      server.server.headersTimeout = 66_000;
      registerRoutes(server, { maxWaitMs: config.maxWaitMs }, {
        clock, log, db: db!, auth: new Authenticator(config.adminToken, s.tokens), ...s,
        waiters, watch, metrics, state: () => state,
      });
      if (db!.dialect === 'postgres') {
        listener = new ReplicaListener({
          clock, log, replicaId,
          connect: () => new pg.Client({ connectionString: config.store.url }),
          available: (pool, resources) => waiters.available(pool, resources),
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
      scheduleReaper();
      log.info('integration-proxy listening', { url, store: db!.dialect });
    } catch (err) {
      await shutdown();
      throw err;
    }
  }

  async function shutdown(): Promise<void> {
    state = 'draining';
    waiters.stop();
    watch.stop();
    if (reaperTimer) clock.clearTimeout(reaperTimer);
    await reaping;
    await app?.close().catch((err: unknown) => log.warn('closing the HTTP server failed', { err }));
    await listener?.stop();
    await db?.knex.destroy().catch((err: unknown) => log.warn('closing the store failed', { err }));
    app = undefined;
    listener = undefined;
    stores = undefined;
    db = undefined;
    state = 'stopped';
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
      if (!isValid(PoolName, opts.pool)) throw new OutpostError('invalid_request', 'pool: must match ^[A-Za-z0-9._-]+$ (1–128 characters)');
      if (state === 'stopped' || state === 'draining') throw new OutpostError('unavailable', 'the proxy is stopped');
      const s = await openStore();
      return s.tokens.create(opts.pool, opts.admin ?? false);
    },
  };
}
