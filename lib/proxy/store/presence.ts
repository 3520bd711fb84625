import type { AgentView } from '../../protocol/schemas.js';
import { versionStanding } from '../../protocol/semver.js';
import { run, type Db } from './db.js';
import { num } from './rows.js';

/** An agent's presence: online, draining (said goodbye), stale (expected contact missed), offline. */
export type AgentStatus = AgentView['status'];

/** The columns of `outpost_agents` that decide its status. */
export interface PresenceRow {
  last_seen_at: number | string;
  /** '' | 'draining' | 'offline' (a goodbye); null on rows older than the column. */
  state: string | null;
  /** When the proxy expects the agent's next contact at the latest (ms); null on old rows. */
  contact_by: number | string | null;
}

/** offline (said so, or unseen for the presence window) > stale (expected contact missed) > draining > online. */
export function agentStatus(r: PresenceRow, nowMs: number, presenceMs: number): AgentStatus {
  const seen = num(r.last_seen_at);
  if (r.state === 'offline' || nowMs - seen > presenceMs) return 'offline';
  if (nowMs > (r.contact_by === null ? seen + presenceMs : num(r.contact_by))) return 'stale';
  return r.state === 'draining' ? 'draining' : 'online';
}

/** Distinct versions per pool in the version metric; the rest count as `other` (bounded label cardinality). */
const MAX_VERSIONS = 20;

export interface AgentCensus {
  byStatus: Array<{ pool: string; status: AgentStatus; n: number }>;
  /** Agents not offline per pool and version; unparseable versions as `invalid`. */
  byVersion: Array<{ pool: string; version: string; n: number }>;
}

/** One scan of the agents (bounded by the agents quota per pool), for `/metrics`. */
export async function agentCensus(db: Db, nowMs: number, presenceMs: number): Promise<AgentCensus> {
  const rows = await run<PresenceRow & { pool: string; version: string }>(db, 'SELECT pool, version, state, last_seen_at, contact_by FROM outpost_agents');
  const byStatus = new Map<string, { pool: string; status: AgentStatus; n: number }>();
  const versions = new Map<string, Map<string, number>>();
  for (const r of rows) {
    const status = agentStatus(r, nowMs, presenceMs);
    const k = `${r.pool}\u0000${status}`;
    byStatus.set(k, { pool: r.pool, status, n: (byStatus.get(k)?.n ?? 0) + 1 });
    if (status === 'offline') continue;
    const perPool = versions.get(r.pool) ?? new Map<string, number>();
    versions.set(r.pool, perPool);
    let v = versionStanding(r.version, {}) === 'invalid' ? 'invalid' : r.version;
    if (!perPool.has(v) && perPool.size >= MAX_VERSIONS) v = 'other';
    perPool.set(v, (perPool.get(v) ?? 0) + 1);
  }
  const byVersion = [...versions].flatMap(([pool, m]) => [...m].map(([version, n]) => ({ pool, version, n })));
  return { byStatus: [...byStatus.values()], byVersion };
}

/** An agent that became stale or offline without saying so. */
export interface PresenceTransition {
  pool: string;
  agentId: string;
  status: 'stale' | 'offline';
  lastSeenAt: string;
}

/**
 * Agents whose expected contact (stale) or presence window (offline) ran out
 * in (sinceMs, nowMs], not those that said goodbye `offline`.
 */
export async function agentTransitions(db: Db, w: { sinceMs: number; nowMs: number; presenceMs: number; limit: number }): Promise<PresenceTransition[]> {
  const limit = Math.max(1, Math.floor(w.limit));
  const rows = await run<{ pool: string; agent_id: string; last_seen_at: number | string; contact_by: number | string | null }>(
    db,
    `SELECT pool, agent_id, last_seen_at, contact_by FROM outpost_agents
     WHERE state <> 'offline' AND ((contact_by >= ? AND contact_by < ? AND last_seen_at >= ?) OR (last_seen_at >= ? AND last_seen_at < ?))
     ORDER BY last_seen_at LIMIT ${limit}`,
    [w.sinceMs, w.nowMs, w.nowMs - w.presenceMs, w.sinceMs - w.presenceMs, w.nowMs - w.presenceMs],
  );
  return rows.map((r) => ({
    pool: r.pool,
    agentId: r.agent_id,
    status: w.nowMs - num(r.last_seen_at) > w.presenceMs ? 'offline' : 'stale',
    lastSeenAt: new Date(num(r.last_seen_at)).toISOString(),
  }));
}
