import type { LeaseRef, ResultItem } from '../../../protocol/schemas.js';
import { drive, marks } from '../db.js';
import type { SqliteConn } from '../sqlite.js';
import { num } from '../rows.js';
import { wipeSecretsSql } from '../wipe.js';
import { END_LEASE_ATTEMPT } from '../attempts.js';
import { CLAIM_SET, checkMax, claimSetBindings, failUnit, leaseKey, type ClaimArgs, type ClaimedRow, type ReleasedRow, type ResultsOutcome } from './lease-ops.js';

/*
 * The lease operations on SQLite: each batch is one transaction of cached
 * prepared statements, one small statement per lease (measured 3–5× faster
 * than one UPDATE with a CASE per item for a 32-item batch, and ~20× faster
 * than UPDATE … FROM json_each, whose plan scans the table). The fence of
 * every write is `id = ? AND pool = ? AND status = 'leased' AND lease_token = ?`.
 */

const FENCE = `id = ? AND pool = ? AND status = 'leased' AND lease_token = ?`;

const RENEW = `UPDATE outpost_jobs SET lease_expires_at = ?, agent_id = ? WHERE ${FENCE} RETURNING id`;
const CANCELLED = `SELECT id FROM outpost_jobs WHERE id = ? AND pool = ? AND status = 'cancelled' AND lease_token = ?`;
const SUCCEED = `UPDATE outpost_jobs SET status = 'succeeded', result = ?, error = NULL, result_token = lease_token, finished_at = ?,
  lease_expires_at = NULL, ${wipeSecretsSql('sqlite')} WHERE ${FENCE} RETURNING id`;
const RESULT_TOKEN = `SELECT result_token FROM outpost_jobs WHERE id = ? AND pool = ?`;
const RELEASE = `UPDATE outpost_jobs SET status = 'queued', attempt = attempt - 1, agent_id = NULL, lease_expires_at = NULL
  WHERE ${FENCE} RETURNING id, lease_token, resource`;
const DISCARD_PAGES = 'DELETE FROM outpost_output WHERE job_id = ? AND lease_token <> ? RETURNING bytes';
const GIVE_BACK_BYTES = 'UPDATE outpost_pool_usage SET output_bytes = output_bytes - ? WHERE pool = ?';

function claimSql(resources: number, max: number): string {
  const fits = resources ? `(resource IS NULL OR resource IN (${marks(resources)}))` : 'resource IS NULL';
  return `UPDATE outpost_jobs SET ${CLAIM_SET}
    WHERE id IN (SELECT id FROM outpost_jobs WHERE pool = ? AND status = 'queued' AND available_at <= ? AND ${fits}
                 ORDER BY available_at, id LIMIT ${max})
    RETURNING id, type, resource, payload, attempt, timeout_ms, leases, lease_token`;
}

/**
 * Leases up to `max` queued jobs and discards the pages of earlier leases
 * (so a reader never sees two attempts mixed): one transaction. The lease's
 * attempt is its job row until it ends (attempts.ts).
 */
export function claim(c: SqliteConn, a: ClaimArgs): ClaimedRow[] {
  checkMax(a.max);
  return c.transaction(() => {
    const rows = c.all<ClaimedRow>(claimSql(a.resources.length, a.max), [...claimSetBindings(a), a.pool, a.nowMs, ...a.resources]);
    for (const r of rows) {
      if (num(r.leases) <= 1) continue;
      const gone = c.all<{ bytes: number }>(DISCARD_PAGES, [r.id, r.lease_token]);
      const bytes = gone.reduce((n, g) => n + num(g.bytes), 0);
      if (bytes) c.all(GIVE_BACK_BYTES, [bytes, a.pool]);
    }
    return rows;
  });
}

/** Renews leases; returns the keys of those renewed and of those cancelled while held by their token. */
export function renew(c: SqliteConn, pool: string, agentId: string, expiresAtMs: number, refs: readonly LeaseRef[]): { ok: Set<string>; cancelled: Set<string> } {
  return c.transaction(() => {
    const ok = new Set<string>();
    const cancelled = new Set<string>();
    for (const r of refs) {
      const key = leaseKey(r.jobId, r.leaseToken);
      if (c.all(RENEW, [expiresAtMs, agentId, r.jobId, pool, r.leaseToken]).length) ok.add(key);
      else if (c.all(CANCELLED, [r.jobId, pool, r.leaseToken]).length) cancelled.add(key);
    }
    return { ok, cancelled };
  });
}

/** Records a batch of results in one transaction (see LeaseStore.results). */
export function results(
  c: SqliteConn,
  pool: string,
  items: readonly ResultItem[],
  nowMs: number,
  retryDelayMs: (attempt: number) => number,
): ResultsOutcome {
  const wipe = wipeSecretsSql('sqlite');
  return c.transaction(() => {
    const out: ResultsOutcome = { accepted: new Set(), repeated: new Set(), retries: [] };
    for (const i of items) {
      const key = leaseKey(i.jobId, i.leaseToken);
      if (i.outcome === 'succeeded') {
        if (c.all(SUCCEED, [JSON.stringify(i.result ?? null), nowMs, i.jobId, pool, i.leaseToken]).length) out.accepted.add(key);
        continue;
      }
      const failed = drive(c, failUnit('sqlite', pool, i, nowMs, retryDelayMs, wipe));
      if (!failed) continue;
      out.accepted.add(key);
      if (failed.retryAtMs !== null) out.retries.push({ resource: failed.resource, atMs: failed.retryAtMs });
    }
    for (const i of items) {
      const key = leaseKey(i.jobId, i.leaseToken);
      if (out.accepted.has(key)) continue;
      const [row] = c.all<{ result_token: string | null }>(RESULT_TOKEN, [i.jobId, pool]);
      if (row?.result_token === i.leaseToken) out.repeated.add(key);
    }
    return out;
  });
}

/** Gives leases back without spending an attempt; ends their attempt rows `released`. One transaction. */
export function release(c: SqliteConn, pool: string, nowMs: number, refs: readonly LeaseRef[]): ReleasedRow[] {
  return c.transaction(() => {
    const out: ReleasedRow[] = [];
    for (const r of refs) {
      // The attempt ends first: it is read from the lease's job row, which RELEASE then changes (same fence).
      c.all(END_LEASE_ATTEMPT, [nowMs, nowMs, 'released', r.jobId, pool, r.leaseToken]);
      const [row] = c.all<ReleasedRow>(RELEASE, [r.jobId, pool, r.leaseToken]);
      if (row) out.push(row);
    }
    return out;
  });
}
