import type { Clock } from '../../util/clock.js';
import type { LifecycleState } from '../../util/lifecycle.js';
import type { Logger } from '../../log/index.js';
import type { Db } from '../store/db.js';
import type { LeaseStore } from '../store/leases.js';
import type { JobStore } from '../store/jobs.js';
import type { OutputStore } from '../store/output.js';
import type { TokenStore } from '../store/tokens.js';
import type { AgentStore } from '../store/agents.js';
import type { PoolStore } from '../store/pools.js';
import type { Waiters } from '../waiters.js';
import type { JobWatch } from '../watch.js';
import type { Authenticator } from './auth.js';
import type { ProxyMetrics } from '../metrics.js';

/** The slice of config the routes need. */
export interface RouteOptions {
  /** Cap on a lease poll's wait and on `GET /v1/jobs/{id}?waitMs`. */
  maxWaitMs: number;
  /** Parked lease polls per pool on this replica; a poll beyond it gets 429. Default: unlimited. */
  maxParkedPollsPerPool?: number;
  /** Accept job types the proxy does not know, unchecked (config `acceptUnknownTypes`). Default false. */
  acceptUnknownTypes?: boolean;
  /** Agent versions (config `agents.*`): named in lease answers; below `minVersion` (or unparseable when it is set) → 426. Default: none. */
  agentVersions?: { latestVersion: string | null; minVersion: string | null };
  /** Lease TTL handed out: an agent that only heartbeats is expected again within it (presence). Default 30 000 ms. */
  leaseTtlMs?: number;
}

/** What the routes work with; built once by the composition root. */
export interface RouteDeps {
  clock: Clock;
  log: Logger;
  db: Db;
  auth: Authenticator;
  leases: LeaseStore;
  jobs: JobStore;
  output: OutputStore;
  tokens: TokenStore;
  agents: AgentStore;
  /** Pools' public sealing keys. */
  pools: PoolStore;
  waiters: Waiters;
  watch: JobWatch;
  metrics: ProxyMetrics;
  state(): LifecycleState;
}

/** What the agent side uses (agent-routes.ts). */
export type AgentRouteDeps = Pick<RouteDeps, 'auth' | 'leases' | 'agents' | 'waiters' | 'output' | 'metrics' | 'clock' | 'log' | 'state'>;
/** What the job side uses (job-routes.ts). */
export type JobRouteDeps = Pick<RouteDeps, 'auth' | 'jobs' | 'tokens' | 'agents' | 'output' | 'watch' | 'db' | 'clock' | 'state'>;
/** What the pool-key routes use (pool-routes.ts). */
export type PoolRouteDeps = Pick<RouteDeps, 'auth' | 'pools'>;
