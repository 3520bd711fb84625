import type { Clock } from '../../util/clock.js';
import type { AgentView } from '../../protocol/schemas.js';
import { marks, query, run, type Db } from './db.js';
import { num } from './rows.js';

/** Options of the agent registry. */
export interface AgentStoreOptions {
  /** An agent is online while seen within this window. Default (config) 90 000 ms. */
  presenceMs: number;
}

export interface AgentStoreDeps {
  db: Db;
  clock: Clock;
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

interface Seen {
  writtenAtMs: number;
  fingerprint: string;
}

/**
 * Presence of agents per pool. A poll or heartbeat touches the agent; the
 * row is written at most once per tenth of the presence window unless what
 * the agent reports changed, so presence costs no write on the hot path.
 */
export class AgentStore {
  private readonly seen = new Map<string, Seen>();

  constructor(
    private readonly opts: AgentStoreOptions,
    private readonly deps: AgentStoreDeps,
  ) {}

  async touch(pool: string, info: AgentInfo): Promise<void> {
    const now = this.deps.clock.now();
    const key = `${pool}\u0000${info.agentId}`;
    const prev = this.seen.get(key);
    const fingerprint = info.hostname === undefined ? prev?.fingerprint ?? '' : JSON.stringify([info.hostname, info.version, info.resources]);
    if (prev && prev.fingerprint === fingerprint && now - prev.writtenAtMs < this.opts.presenceMs / 10) return;
    this.seen.set(key, { writtenAtMs: now, fingerprint });
    // Agents get a new id at every start: forget throttle entries of agents long gone.
    if (this.seen.size > MAX_TRACKED_AGENTS) {
      for (const [k, v] of this.seen) if (now - v.writtenAtMs > this.opts.presenceMs) this.seen.delete(k);
    }
    if (info.hostname === undefined) {
      // A heartbeat carries no description: refresh lastSeenAt of a known agent only.
      await run(this.deps.db, 'UPDATE outpost_agents SET last_seen_at = ? WHERE pool = ? AND agent_id = ?', [now, pool, info.agentId]);
      return;
    }
    await run(
      this.deps.db,
      `INSERT INTO outpost_agents (pool, agent_id, hostname, version, resources, last_seen_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (pool, agent_id) DO UPDATE SET hostname = excluded.hostname, version = excluded.version,
         resources = excluded.resources, last_seen_at = excluded.last_seen_at`,
      [pool, info.agentId, info.hostname, info.version ?? '', JSON.stringify(info.resources ?? []), now],
    );
  }

  /** Agents of some pools (all when null) with their status and leased job count. */
  async list(pools: readonly string[] | null): Promise<AgentView[]> {
    const where = pools ? `WHERE pool IN (${marks(pools.length)})` : '';
    const rows = await run<{ pool: string; agent_id: string; hostname: string; version: string; resources: string; last_seen_at: number | string }>(
      this.deps.db,
      `SELECT * FROM outpost_agents ${where} ORDER BY pool, agent_id`,
      pools ?? [],
    );
    const counts = await run<{ pool: string; agent_id: string; n: number | string }>(
      this.deps.db,
      `SELECT pool, agent_id, COUNT(*) AS n FROM outpost_jobs WHERE status = 'leased' ${pools ? `AND pool IN (${marks(pools.length)})` : ''}
       GROUP BY pool, agent_id`,
      pools ?? [],
    );
    const inFlight = new Map(counts.map((c) => [`${c.pool}\u0000${c.agent_id}`, num(c.n)]));
    const now = this.deps.clock.now();
    return rows.map((r) => ({
      agentId: r.agent_id,
      pool: r.pool,
      hostname: r.hostname,
      version: r.version,
      resources: JSON.parse(r.resources) as string[],
      status: now - num(r.last_seen_at) <= this.opts.presenceMs ? 'online' : 'offline',
      lastSeenAt: new Date(num(r.last_seen_at)).toISOString(),
      inFlight: inFlight.get(`${r.pool}\u0000${r.agent_id}`) ?? 0,
    }));
  }
}
