import type { LeaseRef, ResultItem } from '../../../protocol/schemas.js';
import { atomic, query, type Db } from '../db.js';
import { wipeSecretsSql } from '../wipe.js';
import { endAttemptsFrom } from '../attempts.js';
import { CLAIM_SET, checkMax, claimSetBindings, failUnit, leaseKey, type ClaimArgs, type ClaimedRow, type ReleasedRow, type ResultsOutcome } from './lease-ops.js';

/*
 * The lease operations on PostgreSQL: each batch is one statement that joins
 * the batch's (id, token) pairs, passed as two text arrays and read with
 * `unnest`, to the jobs: `j.id = r.id AND j.lease_token = r.token`, so a
 * stale token beside the live one matches nothing. The statement's text is
 * the same whatever the batch size. Side writes (attempt rows) ride in the
 * same statement as data-modifying CTEs.
 */

type PgDb = Extract<Db, { dialect: 'postgres' }>;
interface Row {
  id: string;
  lease_token: string;
}

const BATCH = `unnest(?::text[], ?::text[]) AS r(id, token)`;
/*
 * The fence of a batch: `j.pool = ? AND j.status = 'leased'` (both columns
 * are NOT NULL) wrapped in `IS TRUE`, so that the planner can reach the rows
 * only by primary key, one lookup per item. Written plainly, it let the
 * planner answer them from an index of a whole pool or of the leased jobs
 * whenever its statistics were stale, as they are after a burst of work:
 * a bitmap scan of outpost_jobs_leased or outpost_jobs_idem that walks every
 * row of the pool, or every dead entry a busy queue leaves in the index
 * until VACUUM (5–30 ms for a 24-item batch after 20 000 jobs, and growing;
 * under 2 ms by key).
 */
const FENCE = `j.id = r.id AND j.lease_token = r.token AND (j.pool = ? AND j.status = 'leased') IS TRUE`;

const pairs = (refs: readonly LeaseRef[]) => [refs.map((r) => r.jobId), refs.map((r) => r.leaseToken)];
const keys = (rows: readonly Row[]) => new Set(rows.map((r) => leaseKey(r.id, r.lease_token)));

/**
 * Leases up to `max` queued jobs (SKIP LOCKED: replicas claim different
 * rows), in one statement; pages of earlier leases are discarded after (so a
 * reader never sees two attempts mixed). The lease's attempt is its job row
 * until it ends (attempts.ts).
 */
export async function claim(db: PgDb, a: ClaimArgs): Promise<ClaimedRow[]> {
  checkMax(a.max);
  const rows = await query<ClaimedRow>(db.knex, claimSql(a), claimBindings(a));
  for (const r of rows) if (Number(r.leases) > 1) await discardPages(db, a.pool, r.id, r.lease_token);
  return rows;
}

function claimSql(a: ClaimArgs): string {
  const fits = a.resources.length ? '(resource IS NULL OR resource = ANY(?::text[]))' : 'resource IS NULL';
  return `UPDATE outpost_jobs SET ${CLAIM_SET}
    WHERE id IN (SELECT id FROM outpost_jobs WHERE pool = ? AND status = 'queued' AND available_at <= ? AND ${fits}
                 ORDER BY available_at, id LIMIT ${a.max} FOR UPDATE SKIP LOCKED)
    RETURNING id, type, resource, payload, attempt, timeout_ms, leases, lease_token`;
}

function claimBindings(a: ClaimArgs): unknown[] {
  return [...claimSetBindings(a), a.pool, a.nowMs, ...(a.resources.length ? [a.resources] : [])];
}

/** Deletes a job's pages of earlier leases and gives their bytes back to the pool's output quota, in one statement. */
async function discardPages(db: PgDb, pool: string, jobId: string, leaseToken: string): Promise<void> {
  await query(
    db.knex,
    `WITH gone AS (DELETE FROM outpost_output WHERE job_id = ? AND lease_token <> ? RETURNING bytes)
     UPDATE outpost_pool_usage SET output_bytes = output_bytes - (SELECT SUM(bytes) FROM gone)
     WHERE pool = ? AND (SELECT COALESCE(SUM(bytes), 0) FROM gone) > 0`,
    [jobId, leaseToken, pool],
  );
}

/** Renews leases; returns the keys of those renewed and of those cancelled while held by their token. */
export async function renew(db: PgDb, pool: string, agentId: string, expiresAtMs: number, refs: readonly LeaseRef[]): Promise<{ ok: Set<string>; cancelled: Set<string> }> {
  const ok = keys(
    await query<Row>(
      db.knex,
      `UPDATE outpost_jobs j SET lease_expires_at = ?, agent_id = ? FROM ${BATCH} WHERE ${FENCE} RETURNING j.id, j.lease_token`,
      [expiresAtMs, agentId, ...pairs(refs), pool],
    ),
  );
  if (ok.size === refs.length) return { ok, cancelled: new Set() };
  const rest = refs.filter((r) => !ok.has(leaseKey(r.jobId, r.leaseToken)));
  const cancelled = keys(
    await query<Row>(
      db.knex,
      `SELECT j.id, j.lease_token FROM outpost_jobs j JOIN ${BATCH} ON j.id = r.id AND j.lease_token = r.token
       WHERE j.pool = ? AND j.status = 'cancelled'`,
      [...pairs(rest), pool],
    ),
  );
  return { ok, cancelled };
}

/**
 * Records a batch of results: the successes in one statement, each failure
 * in a transaction of its own (they are rare, and each reads its attempt to
 * choose retry or failed), then the repeats in one read.
 */
export async function results(
  db: PgDb,
  pool: string,
  items: readonly ResultItem[],
  nowMs: number,
  retryDelayMs: (attempt: number) => number,
): Promise<ResultsOutcome> {
  const wipe = wipeSecretsSql('postgres');
  const out: ResultsOutcome = { accepted: new Set(), repeated: new Set(), retries: [] };
  const succeeded = items.filter((i): i is Success => i.outcome === 'succeeded');
  if (succeeded.length) {
    for (const k of keys(await query<Row>(db.knex, succeedSql(), succeedBindings(pool, succeeded, nowMs)))) out.accepted.add(k);
  }
  for (const i of items) {
    if (i.outcome !== 'failed') continue;
    const failed = await atomic(db, failUnit('postgres', pool, i, nowMs, retryDelayMs, wipe));
    if (!failed) continue;
    out.accepted.add(leaseKey(i.jobId, i.leaseToken));
    if (failed.retryAtMs !== null) out.retries.push({ resource: failed.resource, atMs: failed.retryAtMs });
  }
  out.repeated = await repeatsOf(db, pool, items, out.accepted);
  return out;
}

/** The successes of a batch, fenced, in one statement. Bindings: succeedBindings. */
function succeedSql(): string {
  return `UPDATE outpost_jobs j SET status = 'succeeded', result = r.result, error = NULL, result_token = j.lease_token, finished_at = ?,
      lease_expires_at = NULL, ${wipeSecretsSql('postgres')}
    FROM unnest(?::text[], ?::text[], ?::text[]) AS r(id, token, result) WHERE ${FENCE} RETURNING j.id, j.lease_token`;
}

type Success = Extract<ResultItem, { outcome: 'succeeded' }>;

function succeedBindings(pool: string, succeeded: readonly Success[], nowMs: number): unknown[] {
  return [nowMs, ...pairs(succeeded), succeeded.map((i) => JSON.stringify(i.result ?? null)), pool];
}

/** Of the items not accepted, the leases whose job already ended with that token (a repeat): one read, none when all were accepted. */
async function repeatsOf(db: PgDb, pool: string, items: readonly ResultItem[], accepted: ReadonlySet<string>): Promise<Set<string>> {
  const repeated = new Set<string>();
  const rest = items.filter((i) => !accepted.has(leaseKey(i.jobId, i.leaseToken)));
  if (!rest.length) return repeated;
  const rows = await query<{ id: string; result_token: string }>(
    db.knex,
    'SELECT id, result_token FROM outpost_jobs WHERE pool = ? AND id = ANY(?::text[]) AND result_token IS NOT NULL',
    [pool, rest.map((i) => i.jobId)],
  );
  for (const r of rows) repeated.add(leaseKey(r.id, r.result_token));
  return repeated;
}

/**
 * A poll that carries only successes: they are recorded and the next jobs
 * claimed in one statement, so one round trip and one commit instead of
 * two (in bench-peers on this 2-core machine a statement took 3.7–4.9 ms
 * p50 as the proxy saw it, of which PostgreSQL's execution was 0.9–1.3 ms).
 * The two UPDATEs touch disjoint rows (leased ones, queued ones), and the
 * claim's sub-select sees the table as it was before the statement, as a
 * claim after the results did. Pages of earlier leases are discarded after,
 * as in `claim`.
 */
export async function succeedAndClaim(db: PgDb, pool: string, succeeded: readonly Success[], a: ClaimArgs): Promise<{ outcome: ResultsOutcome; rows: ClaimedRow[] }> {
  checkMax(a.max);
  const rows = await query<ClaimedRow & { done: boolean }>(
    db.knex,
    `WITH done AS (${succeedSql()}), claimed AS (${claimSql(a)})
     SELECT false AS done, id, type, resource, payload, attempt, timeout_ms, leases, lease_token FROM claimed
     UNION ALL SELECT true, id, NULL, NULL, NULL, NULL, NULL, NULL, lease_token FROM done`,
    [...succeedBindings(pool, succeeded, a.nowMs), ...claimBindings(a)],
  );
  const accepted = keys(rows.filter((r) => r.done));
  const claimed = rows.filter((r) => !r.done);
  for (const r of claimed) if (Number(r.leases) > 1) await discardPages(db, a.pool, r.id, r.lease_token);
  return { outcome: { accepted, repeated: await repeatsOf(db, pool, succeeded, accepted), retries: [] }, rows: claimed };
}

/**
 * Gives leases back without spending an attempt and ends their attempts
 * `released`: one statement. The attempt rows are read from the job rows as
 * they were before it (every part of a statement sees the same snapshot).
 */
export async function release(db: PgDb, pool: string, nowMs: number, refs: readonly LeaseRef[]): Promise<ReleasedRow[]> {
  return query<ReleasedRow>(
    db.knex,
    `WITH released AS (
       UPDATE outpost_jobs j SET status = 'queued', attempt = attempt - 1, agent_id = NULL, lease_expires_at = NULL
       FROM ${BATCH} WHERE ${FENCE} RETURNING j.id, j.lease_token, j.resource
     ), before AS (
       SELECT o.id, o.lease_token, o.attempt, o.agent_id, o.leased_at, o.started_at FROM outpost_jobs o JOIN released USING (id)
     ), ended AS (${endAttemptsFrom('before')})
     SELECT * FROM released`,
    [...pairs(refs), pool, nowMs, nowMs, 'released'],
  );
}
