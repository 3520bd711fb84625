import type { JobAttempt, JobError, JobView } from '../../protocol/schemas.js';
import { run, type Db } from './db.js';
import { num, type JobRow } from './rows.js';

/*
 * The `outpost_job_attempts` table: one row per ended lease of a job, so an
 * operator sees which agent ran each attempt and how it ended (the job row
 * keeps only the last one). A row is written when a lease ends other than
 * by success (failure, release, expiry), in the statement or transaction
 * that ends it (sql/leases-*.ts, expiry.ts). The lease the job row holds
 * now (running, succeeded, or cancelled while leased) is read from the job
 * row (agent_id, attempt, leased_at, result_token), so a claim and a
 * success write no attempt row: that insert was a third of a claim's cost.
 * Releases before 0.2 wrote a `running` row at the claim; ending it updates
 * that row. Deleted with the job by retention.
 */

/** How an attempt ended, as stored (`running` only in rows written before 0.2). */
export type AttemptOutcome = JobAttempt['outcome'];

const COLUMNS = 'job_id, lease_token, attempt, agent_id, started_at, ended_at, outcome, error';
/** A row written by an earlier release at the claim (`running`) ends; an ended one never changes (a late duplicate). */
const ON_CONFLICT_END = `ON CONFLICT (job_id, lease_token) DO UPDATE SET ended_at = excluded.ended_at, outcome = excluded.outcome, error = excluded.error
  WHERE outpost_job_attempts.ended_at IS NULL`;

/** A lease's fields as its job row holds them: what an ended attempt is made of. */
export type LeaseFields = Pick<JobRow, 'attempt' | 'agent_id' | 'leased_at' | 'started_at'>;

/** One attempt ends, from values read earlier. Bindings: endAttemptBindings. */
export const END_ATTEMPT = `INSERT INTO outpost_job_attempts (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ${ON_CONFLICT_END}`;

/** END_ATTEMPT's bindings: the lease's start is its `leased_at` (rows from before the column: the job's start). */
export function endAttemptBindings(jobId: string, leaseToken: string, lease: LeaseFields, endedAtMs: number, outcome: AttemptOutcome, error: string | null): unknown[] {
  return [jobId, leaseToken, num(lease.attempt), lease.agent_id ?? '', num(lease.leased_at ?? lease.started_at ?? endedAtMs), endedAtMs, outcome, error];
}

/**
 * The attempts of the leases a row source `src` names end: `src` has the
 * columns id, lease_token and LeaseFields' (a data-modifying CTE on
 * PostgreSQL, or a sub-select of the job row before the statement that
 * changes it). Bindings: ended at (also the start when none is known),
 * ended at, outcome, then src's own. (`WHERE true`: SQLite reads an ON after
 * FROM as a join's unless a WHERE comes first.)
 */
export function endAttemptsFrom(src: string): string {
  return `INSERT INTO outpost_job_attempts (${COLUMNS})
    SELECT id, lease_token, attempt, COALESCE(agent_id, ''), COALESCE(leased_at, started_at, ?), ?, ?, NULL FROM ${src} WHERE true ${ON_CONFLICT_END}`;
}

/**
 * The attempt of a lease still on its job row ends, read from that row
 * before the statement that changes it (same transaction, same fence).
 * Bindings: ended at, ended at, outcome, job id, pool, lease token.
 */
export const END_LEASE_ATTEMPT = endAttemptsFrom(
  `(SELECT id, lease_token, attempt, agent_id, leased_at, started_at FROM outpost_jobs
    WHERE id = ? AND pool = ? AND status = 'leased' AND lease_token = ?) AS lease`,
);

/** The job row's fields that describe its current (or last) lease. */
export type LeaseColumns = Pick<JobRow, 'lease_token' | 'result_token' | 'agent_id' | 'attempt' | 'leased_at' | 'started_at'>;

interface AttemptRow {
  lease_token: string;
  attempt: number | string;
  agent_id: string;
  started_at: number | string;
  ended_at: number | string | null;
  outcome: string;
  error: string | null;
}

/** Attempts shown per job (`maxAttempts` ≤ 100; releases add rows). */
const MAX_SHOWN = 100;

/**
 * The attempts of `job`, oldest first: its ended leases from the table, then
 * the lease on its job row when no row ended it (running, succeeded, or
 * cancelled while leased). A `running` row of an earlier release whose lease
 * is no longer the job's shows the job's end instead.
 */
export async function listAttempts(db: Db, job: JobView, lease: LeaseColumns | undefined): Promise<JobAttempt[]> {
  const rows = await run<AttemptRow>(
    db,
    `SELECT lease_token, attempt, agent_id, started_at, ended_at, outcome, error FROM outpost_job_attempts WHERE job_id = ? ORDER BY started_at, attempt, CASE WHEN ended_at IS NULL THEN 1 ELSE 0 END, ended_at LIMIT ${MAX_SHOWN}`,
    [job.id],
  );
  const iso = (v: number | string | null | undefined) => (v === null || v === undefined ? null : new Date(num(v)).toISOString());
  const shown: JobAttempt[] = rows.map((r) => {
    const current = job.status === 'leased' && r.lease_token === lease?.lease_token;
    const stale = r.outcome === 'running' && !current;
    return {
      attempt: num(r.attempt),
      agentId: r.agent_id,
      startedAt: iso(r.started_at),
      endedAt: stale ? job.finishedAt : iso(r.ended_at),
      outcome: stale ? endOf(job, r.lease_token, lease?.result_token) : (r.outcome as AttemptOutcome),
      error: r.error ? (JSON.parse(r.error) as JobError) : null,
    };
  });
  const token = lease?.lease_token;
  if (lease && token && !rows.some((r) => r.lease_token === token)) {
    const running = job.status === 'leased';
    shown.push({
      attempt: num(lease.attempt),
      agentId: lease.agent_id ?? '',
      startedAt: iso(lease.leased_at ?? lease.started_at),
      endedAt: running ? null : job.finishedAt,
      outcome: running ? 'running' : endOf(job, token, lease.result_token),
      error: null,
    });
  }
  return shown;
}

/** How a lease that no attempt row ended, and that the job no longer runs, ended: the job's end. */
function endOf(job: JobView, leaseToken: string, resultToken: string | null | undefined): AttemptOutcome {
  if (job.status === 'succeeded' && leaseToken === resultToken) return 'succeeded';
  return job.status === 'cancelled' ? 'cancelled' : 'unknown';
}
