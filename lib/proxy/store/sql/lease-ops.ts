import type { JobError, LeaseRef, ResultItem } from '../../../protocol/schemas.js';
import { stmt, type Dialect, type Stmt } from '../db.js';
import { num } from '../rows.js';
import { END_ATTEMPT, endAttemptBindings, type LeaseFields } from '../attempts.js';
import type { JobRow } from '../rows.js';

/*
 * What the lease operations of both dialects share (leases-sqlite.ts,
 * leases-pg.ts): their arguments and answers, and the statements whose text
 * is the same in both. Every write is fenced by (job id, lease token,
 * status `leased`, pool), and every answer is keyed by (job id, lease token):
 * a stale token sent beside the live one for the same job is answered for
 * itself.
 */

/** The key of one lease in a batch's answers. */
export function leaseKey(jobId: string, leaseToken: string): string {
  return `${jobId}\n${leaseToken}`;
}

/** Keys of the leases of `refs`. */
export function keysOf(refs: readonly LeaseRef[]): string[] {
  return refs.map((r) => leaseKey(r.jobId, r.leaseToken));
}

/** A claim's arguments. */
export interface ClaimArgs {
  pool: string;
  agentId: string;
  resources: readonly string[];
  /** Jobs at most (a non-negative safe integer: it is written into the text). */
  max: number;
  nowMs: number;
  leaseExpiresAtMs: number;
  /** The per-claim part of each lease token (the job id is appended). */
  secret: string;
}

/** A row as the claim's RETURNING gives it. */
export interface ClaimedRow {
  id: string;
  type: string;
  resource: string | null;
  payload: string;
  attempt: number | string;
  timeout_ms: number | string;
  leases: number | string;
  lease_token: string;
}

/** The SET list of a claim (both dialects); bindings: claimSetBindings. */
export const CLAIM_SET = `status = 'leased', attempt = attempt + 1, leases = leases + 1,
  lease_token = CAST(? AS TEXT) || id, agent_id = ?, lease_expires_at = ?,
  started_at = COALESCE(started_at, ?), leased_at = ?, output_records = 0, output_bytes = 0`;

/** CLAIM_SET's bindings, in its order. */
export function claimSetBindings(a: ClaimArgs): unknown[] {
  return [a.secret, a.agentId, a.leaseExpiresAtMs, a.nowMs, a.nowMs];
}

/** A results batch's outcome, by lease key. */
export interface ResultsOutcome {
  /** Leases whose result this batch recorded. */
  accepted: Set<string>;
  /** Leases whose job had already ended with this token (a repeat): answered `accepted`, nothing changed. */
  repeated: Set<string>;
  /** Retryable failures, back in the queue at `atMs`. */
  retries: Array<{ resource: string | null; atMs: number }>;
}

/** A released lease. */
export interface ReleasedRow {
  id: string;
  lease_token: string;
  resource: string | null;
}

/** Validates a claim's `max` (written into the SQL text: SQLite re-prepares a statement whose LIMIT is bound). */
export function checkMax(max: number): void {
  if (!Number.isSafeInteger(max) || max < 0) throw new Error('claim: max must be a non-negative integer');
}

/** The outcome of one failure: null when the lease was not held (lost), else when it runs again (null: failed for good). */
export type FailOutcome = { retryAtMs: number | null; resource: string | null } | null;

/**
 * One failure result, fenced: back to queued after the retry delay
 * (retryable, attempts left), else `failed`; the attempt row ends with the
 * error. Statements shared by both dialects; on PostgreSQL the row is locked
 * first (READ COMMITTED would let a reaper move it between the two).
 */
export function failUnit(
  dialect: Dialect,
  pool: string,
  item: ResultItem & { outcome: 'failed' },
  nowMs: number,
  retryDelayMs: (attempt: number) => number,
  wipe: string,
): () => Generator<Stmt, FailOutcome, unknown[]> {
  const lock = dialect === 'postgres' ? 'FOR UPDATE' : '';
  return function* () {
    const [row] = (yield stmt(
      `SELECT attempt, max_attempts, resource, agent_id, leased_at, started_at FROM outpost_jobs
       WHERE id = ? AND pool = ? AND lease_token = ? AND status = 'leased' ${lock}`,
      [item.jobId, pool, item.leaseToken],
    )) as Array<LeaseFields & Pick<JobRow, 'max_attempts' | 'resource'>>;
    if (!row) return null;
    const attempt = num(row.attempt);
    const error = JSON.stringify(item.error);
    let retryAtMs: number | null = null;
    if (item.error.retryable && attempt < num(row.max_attempts)) {
      retryAtMs = nowMs + retryDelayMs(attempt);
      yield stmt(
        `UPDATE outpost_jobs SET status = 'queued', error = ?, result_token = lease_token, agent_id = NULL,
           lease_expires_at = NULL, available_at = ? WHERE id = ?`,
        [error, retryAtMs, item.jobId],
      );
    } else {
      yield stmt(
        `UPDATE outpost_jobs SET status = 'failed', error = ?, result_token = lease_token, finished_at = ?,
           lease_expires_at = NULL, ${wipe} WHERE id = ?`,
        [error, nowMs, item.jobId],
      );
    }
    yield stmt(END_ATTEMPT, endAttemptBindings(item.jobId, item.leaseToken, row, nowMs, 'failed', JSON.stringify(item.error satisfies JobError)));
    return { retryAtMs, resource: row.resource };
  };
}
