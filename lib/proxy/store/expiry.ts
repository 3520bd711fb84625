import type { Clock } from '../../util/clock.js';
import { query, run, type Db } from './db.js';
import { wipeSecretsSql } from './wipe.js';
import { bump, tellAvailable, type Available, type StoreEvents } from './events.js';
import { num } from './rows.js';
import { END_ATTEMPT, endAttemptBindings, endAttemptsFrom, type LeaseFields } from './attempts.js';

/** A lease the reaper found expired (for the proxy's log line). */
export interface ExpiredLease {
  jobId: string;
  pool: string;
  /** The agent that held it. */
  agentId: string | null;
  /** The attempt that expired. */
  attempt: number;
  /** true: back in the queue; false: that was its last attempt, the job failed (`lease_lost`). */
  requeued: boolean;
}

export interface ExpiryDeps {
  db: Db;
  clock: Clock;
  events: StoreEvents;
  replicaId: string;
}

/**
 * Expired leases go back to queued (the lease already counted as an attempt,
 * at claim), or end `failed` with `lease_lost` when attempts are exhausted.
 *
 * One statement, fenced by `status = 'leased' AND lease_expires_at <= now`:
 * on PostgreSQL two replicas reaping at once both try to lock the same rows;
 * the second waits, re-checks the WHERE on the row the first wrote (READ
 * COMMITTED), finds it no longer `leased` and skips it, so each lease expires
 * once (one `expired` attempt row, one log line; `attempt + 1` happens only
 * at the next claim). The attempt rows end with it: in the same statement on
 * PostgreSQL, in the same transaction on SQLite (attempts.ts). Returns how many leases expired.
 */
export async function reapExpired(deps: ExpiryDeps, onExpired?: (leases: ExpiredLease[]) => void): Promise<number> {
  const { db, clock, events } = deps;
  const now = clock.now();
  const expire = `UPDATE outpost_jobs SET
       status = CASE WHEN attempt >= max_attempts THEN 'failed' ELSE 'queued' END,
       error = CASE WHEN attempt >= max_attempts
         THEN '{"code":"lease_lost","message":"lease expired after ' || attempt || ' attempts","retryable":false}'
         ELSE error END,
       finished_at = CASE WHEN attempt >= max_attempts THEN ? ELSE finished_at END,
       ${wipeSecretsSql(db.dialect, 'attempt >= max_attempts')},
       lease_expires_at = NULL
     WHERE status = 'leased' AND lease_expires_at <= ? RETURNING id, pool, status, resource, lease_token, agent_id, attempt, leased_at, started_at`;
  let rows: ReapedRow[];
  if (db.dialect === 'sqlite') {
    const c = db.sqlite;
    // One transaction: the fenced UPDATE, then the attempt rows of exactly the leases it expired.
    rows = c.transaction(() => {
      const expired = c.all<ReapedRow>(expire, [now, now]);
      for (const r of expired) c.all(END_ATTEMPT, endAttemptBindings(r.id, r.lease_token, r, now, 'expired', null));
      return expired;
    });
  } else {
    // The attempt rows end in the same statement, joined to the rows this UPDATE changed.
    rows = await query<ReapedRow>(
      db.knex,
      `WITH expired AS (${expire}), ended AS (${endAttemptsFrom('expired')})
       SELECT * FROM expired`,
      [now, now, now, now, 'expired'],
    );
  }
  if (!rows.length) return 0;
  onExpired?.(rows.map((r) => ({ jobId: r.id, pool: r.pool, agentId: r.agent_id, attempt: num(r.attempt), requeued: r.status === 'queued' })));
  const av: Available = new Map();
  for (const r of rows) {
    if (r.status === 'queued') bump(av, r.pool, r.resource);
    events.changed(r.id);
  }
  await tellAvailable(db, events, deps.replicaId, av);
  return rows.length;
}

interface ReapedRow extends LeaseFields {
  id: string;
  pool: string;
  status: string;
  resource: string | null;
  lease_token: string;
}

/**
 * The earliest lease deadline (wall ms) of any leased job, or null. Served by
 * the partial index `outpost_jobs_leased (lease_expires_at) WHERE status = 'leased'`.
 */
export async function nextLeaseExpiryAt(db: Db): Promise<number | null> {
  const [row] = await run<{ at: number | string | null }>(db, `SELECT MIN(lease_expires_at) AS at FROM outpost_jobs WHERE status = 'leased'`, []);
  return row?.at == null ? null : num(row.at);
}
