import type { AgentView } from '../../protocol/schemas.js';
import { versionStanding } from '../../protocol/semver.js';
import { marks, run, type Db } from './db.js';
import { num } from './rows.js';
import { decodeCursor, encodeCursor } from './cursor.js';
import { agentStatus } from './presence.js';

/** Leased job ids listed per agent. */
const MAX_IN_FLIGHT_IDS = 100;

/** A row of outpost_agents. */
export interface AgentRow {
  pool: string;
  agent_id: string;
  hostname: string;
  version: string;
  resources: string;
  last_seen_at: number | string;
  state: string | null;
  contact_by: number | string | null;
}

/** One page of agents. */
export interface AgentPageResult {
  agents: AgentView[];
  nextCursor: string | null;
}

/**
 * One page of agents of some pools (all when null), by (pool, agentId),
 * with their status at `nowMs` and leased job count (counted for this page
 * only). `versions`: the configured agent versions (`agents.*`), none
 * checked when both are unset.
 */
export async function listAgents(
  db: Db,
  opts: { presenceMs: number; versions: { latestVersion?: string | null; minVersion?: string | null } },
  nowMs: number,
  q: { pools: readonly string[] | null; limit: number; cursor?: string | undefined },
): Promise<AgentPageResult> {
  const { pools, limit, cursor } = q;
  const where: string[] = [];
  const bindings: unknown[] = [];
  if (pools) {
    where.push(`pool IN (${marks(pools.length)})`);
    bindings.push(...pools);
  }
  if (cursor) {
    const [pool, agentId] = decodeCursor(cursor, ['string', 'string']);
    where.push('(pool, agent_id) > (?, ?)');
    bindings.push(pool, agentId);
  }
  if (!Number.isSafeInteger(limit) || limit < 1) throw new Error('list: limit must be a positive integer');
  const rows = await run<AgentRow>(
    db,
    `SELECT * FROM outpost_agents ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY pool, agent_id LIMIT ${limit + 1}`,
    bindings,
  );
  const page = rows.slice(0, limit);
  const inFlight = new Map<string, string[]>();
  const byPool = new Map<string, string[]>();
  for (const r of page) {
    const ids = byPool.get(r.pool);
    if (ids) ids.push(r.agent_id);
    else byPool.set(r.pool, [r.agent_id]);
  }
  // Leased jobs only, from their partial index (SQLite is told: it would rather scan the table).
  const hint = db.dialect === 'sqlite' ? 'INDEXED BY outpost_jobs_leased' : '';
  for (const [pool, ids] of byPool) {
    const leased = await run<{ agent_id: string; id: string }>(
      db,
      `SELECT agent_id, id FROM outpost_jobs ${hint} WHERE status = 'leased' AND pool = ? AND agent_id IN (${marks(ids.length)})`,
      [pool, ...ids],
    );
    for (const c of leased) {
      const k = `${pool}\u0000${c.agent_id}`;
      const jobs = inFlight.get(k);
      // Pushed, not copied: an agent may hold thousands of leases.
      if (jobs) jobs.push(c.id);
      else inFlight.set(k, [c.id]);
    }
  }
  const last = page[page.length - 1];
  return {
    agents: page.map((r) => {
      const jobs = (inFlight.get(`${r.pool}\u0000${r.agent_id}`) ?? []).sort();
      const standing = versionStanding(r.version, opts.versions);
      return {
        agentId: r.agent_id,
        pool: r.pool,
        hostname: r.hostname,
        version: r.version,
        resources: JSON.parse(r.resources) as string[],
        status: agentStatus(r, nowMs, opts.presenceMs),
        lastSeenAt: new Date(num(r.last_seen_at)).toISOString(),
        inFlight: jobs.length,
        inFlightJobs: jobs.slice(0, MAX_IN_FLIGHT_IDS),
        // Without configured versions nothing is checked (a development build may report anything).
        outdated: !!(opts.versions.latestVersion || opts.versions.minVersion) && standing !== 'current',
        upgradeRequired: !!opts.versions.minVersion && (standing === 'unsupported' || standing === 'invalid'),
      };
    }),
    nextCursor: rows.length > limit && last ? encodeCursor([last.pool, last.agent_id]) : null,
  };
}
