import type { Clock } from '../../util/clock.js';
import { OutpostError } from '../../util/errors.js';
import { atomic, run, stmt, type Db, type Stmt } from './db.js';
import { num } from './rows.js';
import { listAgents, type AgentPageResult, type AgentRow } from './agent-list.js';
import type { QuotaName } from './jobs.js';
import { agentCensus, agentTransitions, type AgentCensus, type PresenceTransition } from './presence.js';

/** Options of the agent registry. */
export interface AgentStoreOptions {
  /** An agent is online while seen within this window. Default (config) 90 000 ms. */
  presenceMs: number;
  /**
   * Agents remembered per pool. A new agentId beyond it takes the place of
   * the longest-offline agent of the pool, or is refused (429) when all are
   * online. Default (config `quotas.agentsPerPool`) 1 000; unlimited when absent.
   */
  maxAgentsPerPool?: number;
  /** Bytes of hostname + version + resources stored per agent (413 beyond). Default (config) 8 192; unlimited when absent. */
  maxInfoBytes?: number;
  /** An agent not heard from by its expected next contact + this is `stale`. Default 5 000 ms. */
  staleGraceMs?: number;
  /** Agent versions (config `agents.*`) for `outdated` / `upgradeRequired`. Default: none checked. */
  versions?: { latestVersion?: string | null; minVersion?: string | null };
}

export interface AgentStoreDeps {
  db: Db;
  clock: Clock;
  /** Told of each refusal (metrics). */
  onQuota?: (quota: QuotaName) => void;
}

/** What an agent says about itself on each poll. */
export interface AgentInfo {
  agentId: string;
  hostname?: string;
  version?: string;
  resources?: readonly string[];
}

/** Above this many remembered agents, entries older than the presence window are dropped. */
const MAX_TRACKED_AGENTS = 10_000;
/** Above this many remembered (pool, resource) pairs the presence map starts over (the store answers meanwhile). */
const MAX_SERVED_ENTRIES = 100_000;

interface Seen {
  writtenAtMs: number;
  fingerprint: string;
  /** The `contact_by` last written. */
  contactByMs: number;
}

/**
 * `contact_by` is rewritten when it would move later by more than this, so a
 * busy agent costs at most one write per this period, and the stored value is
 * never later than the true one (a dead agent is stale by its hold + grace).
 */
const CONTACT_SLACK_MS = 2000;

/**
 * Presence of agents per pool. A poll or heartbeat touches the agent; the
 * row is written at most once per tenth of the presence window unless what
 * the agent reports changed, so presence costs no write on the hot path.
 */
export class AgentStore {
  private readonly seen = new Map<string, Seen>();
  /** `pool \0 resource` → when an agent of this replica last offered it (written with the row). */
  private readonly served = new Map<string, number>();

  constructor(
    private readonly opts: AgentStoreOptions,
    private readonly deps: AgentStoreDeps,
  ) {}

  /**
   * The agent was heard from. `nextContactWithinMs`: when the proxy expects
   * to hear from it again at the latest (the poll hold it granted, or the
   * lease TTL for a heartbeat); past that + `staleGraceMs` it is `stale`.
   * Default: the presence window (never stale before offline). Resolves
   * true when the agent joined: new to the store, or back from offline.
   */
  async touch(pool: string, info: AgentInfo, nextContactWithinMs?: number): Promise<boolean> {
    const now = this.deps.clock.now();
    const key = `${pool}\u0000${info.agentId}`;
    const prev = this.seen.get(key);
    const fingerprint = info.hostname === undefined ? prev?.fingerprint ?? '' : JSON.stringify([info.hostname, info.version, info.resources]);
    const contactBy = now + (nextContactWithinMs === undefined ? this.opts.presenceMs : nextContactWithinMs + this.graceMs);
    if (prev?.fingerprint === fingerprint && now - prev.writtenAtMs < this.opts.presenceMs / 10 && contactBy - prev.contactByMs <= CONTACT_SLACK_MS) return false;
    if (info.hostname === undefined) {
      // A heartbeat carries no description: refresh lastSeenAt of a known agent only.
      this.remember(key, now, fingerprint, contactBy);
      await run(this.deps.db, 'UPDATE outpost_agents SET last_seen_at = ?, contact_by = ? WHERE pool = ? AND agent_id = ?', [now, contactBy, pool, info.agentId]);
      return false;
    }
    const joined = !prev && (await this.isNew(pool, info.agentId, now));
    const resources = JSON.stringify(info.resources ?? []);
    const bytes = Buffer.byteLength(info.hostname) + Buffer.byteLength(info.version ?? '') + Buffer.byteLength(resources);
    if (this.opts.maxInfoBytes !== undefined && bytes > this.opts.maxInfoBytes) {
      this.deps.onQuota?.('agent_info_bytes');
      throw new OutpostError('too_large', `body: hostname, version and resources take ${bytes} bytes; the limit is ${this.opts.maxInfoBytes} (quotas.agentInfoBytes)`);
    }
    const row = [info.hostname, info.version ?? '', resources, now, contactBy];
    await this.write(pool, info.agentId, row);
    this.remember(key, now, fingerprint, contactBy);
    if (this.served.size > MAX_SERVED_ENTRIES) this.served.clear();
    for (const r of info.resources ?? []) this.served.set(`${pool}\u0000${r}`, now);
    return joined;
  }

  private get graceMs(): number {
    return this.opts.staleGraceMs ?? 5000;
  }

  /** True when the store has no row for the agent, or one that is offline (this replica had not seen it). */
  private async isNew(pool: string, agentId: string, now: number): Promise<boolean> {
    const [row] = await run<AgentRow>(this.deps.db, 'SELECT last_seen_at, state FROM outpost_agents WHERE pool = ? AND agent_id = ?', [pool, agentId]);
    return !row || row.state === 'offline' || now - num(row.last_seen_at) > this.opts.presenceMs;
  }

  /**
   * A goodbye: `draining` (no new leases; heartbeats go on while jobs
   * finish, so it is expected again within `nextContactWithinMs`) or
   * `offline` (gone). Returns false for an agent the store does not know.
   */
  async goodbye(pool: string, agentId: string, status: 'draining' | 'offline', nextContactWithinMs: number): Promise<boolean> {
    const now = this.deps.clock.now();
    const contactBy = status === 'offline' ? now : now + nextContactWithinMs + this.graceMs;
    const rows = await run(this.deps.db, 'UPDATE outpost_agents SET state = ?, last_seen_at = ?, contact_by = ? WHERE pool = ? AND agent_id = ? RETURNING agent_id', [
      status, now, contactBy, pool, agentId,
    ]);
    // The next poll of this agentId (a restart) writes its row again and so clears the state.
    this.seen.delete(`${pool}\u0000${agentId}`);
    return rows.length > 0;
  }

  private remember(key: string, now: number, fingerprint: string, contactByMs: number): void {
    this.seen.set(key, { writtenAtMs: now, fingerprint, contactByMs });
    // Agents get a new id at every start: forget throttle entries of agents long gone.
    if (this.seen.size > MAX_TRACKED_AGENTS) {
      for (const [k, v] of this.seen) if (now - v.writtenAtMs > this.opts.presenceMs) this.seen.delete(k);
    }
  }

  /**
   * Updates the agent's row, or inserts it within the pool's quota, in one
   * transaction. On PostgreSQL an advisory lock per pool makes the count
   * exact across replicas (only new agents take it).
   */
  private async write(pool: string, agentId: string, row: unknown[]): Promise<void> {
    const limit = this.opts.maxAgentsPerPool;
    const offlineBefore = this.deps.clock.now() - this.opts.presenceMs;
    const postgres = this.deps.db.dialect === 'postgres';
    const admitted = await atomic(this.deps.db, function* (): Generator<Stmt, boolean, unknown[]> {
      const updated = yield stmt(
        "UPDATE outpost_agents SET hostname = ?, version = ?, resources = ?, last_seen_at = ?, contact_by = ?, state = '' WHERE pool = ? AND agent_id = ? RETURNING agent_id",
        [...row, pool, agentId],
      );
      if (updated.length) return true;
      if (limit !== undefined) {
        if (postgres) yield stmt('SELECT pg_advisory_xact_lock(7242002, hashtext(?))', [pool]);
        const [c] = (yield stmt('SELECT COUNT(*) AS n FROM outpost_agents WHERE pool = ?', [pool])) as Array<{ n: number | string }>;
        if (num(c?.n) >= limit) {
          // Full: the agent offline for longest makes room (restarted agents come back with new ids).
          const freed = yield stmt(
            `DELETE FROM outpost_agents WHERE pool = ? AND agent_id =
               (SELECT agent_id FROM outpost_agents WHERE pool = ? AND last_seen_at < ? ORDER BY last_seen_at LIMIT 1) RETURNING agent_id`,
            [pool, pool, offlineBefore],
          );
          if (!freed.length) return false;
        }
      }
      yield stmt(
        `INSERT INTO outpost_agents (pool, agent_id, hostname, version, resources, last_seen_at, contact_by, state) VALUES (?, ?, ?, ?, ?, ?, ?, '')
         ON CONFLICT (pool, agent_id) DO UPDATE SET hostname = excluded.hostname, version = excluded.version,
           resources = excluded.resources, last_seen_at = excluded.last_seen_at, contact_by = excluded.contact_by, state = ''`,
        [pool, agentId, ...row],
      );
      return true;
    });
    if (!admitted) {
      this.deps.onQuota?.('agents_per_pool');
      throw new OutpostError('rate_limited', `pool ${pool} already has ${limit} agents online; the limit is ${limit} (quotas.agentsPerPool)`, {
        retryAfterMs: Math.min(this.opts.presenceMs, 60_000),
      });
    }
  }

  /**
   * Whether an agent of `pool` offered `resource` within the presence window:
   * this replica's memory first, else one query over the pool's agents
   * (bounded by the agents quota) with a substring test on the stored JSON.
   */
  async serves(pool: string, resource: string): Promise<boolean> {
    const since = this.deps.clock.now() - this.opts.presenceMs;
    const at = this.served.get(`${pool}\u0000${resource}`);
    if (at !== undefined && at >= since) return true;
    const find = this.deps.db.dialect === 'postgres' ? 'strpos(resources, ?) > 0' : 'instr(resources, ?) > 0';
    const rows = await run(
      this.deps.db,
      `SELECT 1 AS x FROM outpost_agents WHERE pool = ? AND last_seen_at >= ? AND ${find} LIMIT 1`,
      [pool, since, JSON.stringify(resource)],
    );
    return rows.length > 0;
  }

  /**
   * One page of agents of some pools (all when null), by (pool, agentId),
   * with their status and leased job count (counted for this page only).
   */
  list(pools: readonly string[] | null, limit = 1000, cursor?: string): Promise<AgentPageResult> {
    return listAgents(this.deps.db, { presenceMs: this.opts.presenceMs, versions: this.opts.versions ?? {} }, this.deps.clock.now(), { pools, limit, cursor });
  }

  /** Agents per pool and status, and per pool and version, for `/metrics` (store/presence.ts). */
  census(): Promise<AgentCensus> {
    return agentCensus(this.deps.db, this.deps.clock.now(), this.opts.presenceMs);
  }

  /** Agents that became stale or offline (by time) in (sinceMs, nowMs], for the presence log. */
  transitions(sinceMs: number, nowMs: number, limit: number): Promise<PresenceTransition[]> {
    return agentTransitions(this.deps.db, { sinceMs, nowMs, presenceMs: this.opts.presenceMs, limit });
  }

  /** Agents online per pool, from the index on last_seen_at (for `/metrics`). */
  async onlineCounts(): Promise<Array<{ pool: string; n: number }>> {
    const rows = await run<{ pool: string; n: number | string }>(
      this.deps.db,
      // An agent that said goodbye (offline) is not counted for the rest of the window.
      "SELECT pool, COUNT(*) AS n FROM outpost_agents WHERE last_seen_at >= ? AND state <> 'offline' GROUP BY pool",
      [this.deps.clock.now() - this.opts.presenceMs],
    );
    return rows.map((r) => ({ pool: r.pool, n: num(r.n) }));
  }

  /** Deletes up to `batch` agents not seen for `olderThanMs`; returns how many. */
  async deleteOffline(olderThanMs: number, batch: number): Promise<number> {
    const rows = await run<{ agent_id: string }>(
      this.deps.db,
      `DELETE FROM outpost_agents WHERE (pool, agent_id) IN
         (SELECT pool, agent_id FROM outpost_agents WHERE last_seen_at < ? ORDER BY last_seen_at LIMIT ${Math.max(1, Math.floor(batch))})
       RETURNING agent_id`,
      [this.deps.clock.now() - olderThanMs],
    );
    return rows.length;
  }
}
