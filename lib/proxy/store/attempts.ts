import type { JobAttempt, JobError, JobView } from '../../protocol/schemas.js';
import { run, type Db } from './db.js';
import { num } from './rows.js';

/*
 * The `outpost_job_attempts` table: one row per lease of a job, so an
 * operator sees which agent ran each attempt and how it ended (the job row
 * keeps only the last one). Written when a lease is claimed, and when it
 * ends other than by success (failure, release, expiry), in the statement
 * or transaction that ends it (sql/leases-*.ts, expiry.ts); a success is
 * read from the job row (its result token is the lease's), which keeps the
 * result path as it was. Deleted with the job by retention.
 */

/** How an attempt ended, as stored (`running` until it ends). */
export type AttemptOutcome = JobAttempt['outcome'];

/** One attempt starts. Bindings: job id, lease token, attempt, agent id, started at. */
export const START_ATTEMPT = `INSERT INTO outpost_job_attempts (job_id, lease_token, attempt, agent_id, started_at, outcome)
  VALUES (?, ?, ?, ?, ?, 'running') ON CONFLICT (job_id, lease_token) DO NOTHING`;

/** One attempt ends (only while running: a late duplicate changes nothing). Bindings: ended at, outcome, job id, lease token. */
export const END_ATTEMPT = `UPDATE outpost_job_attempts SET ended_at = ?, outcome = ?
  WHERE job_id = ? AND lease_token = ? AND ended_at IS NULL`;

/** As END_ATTEMPT with the agent's error. Bindings: ended at, outcome, error JSON, job id, lease token. */
export const END_ATTEMPT_WITH_ERROR = `UPDATE outpost_job_attempts SET ended_at = ?, outcome = ?, error = ?
  WHERE job_id = ? AND lease_token = ? AND ended_at IS NULL`;

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
 * The attempts of `job`, oldest first. One still `running` is the job's
 * success when the job succeeded with its token; one whose lease is no
 * longer the job's otherwise (cancelled while leased) shows the job's end:
 * `cancelled`, else `unknown`.
 */
export async function listAttempts(db: Db, job: JobView, tokens: { leaseToken?: string | null; resultToken?: string | null }): Promise<JobAttempt[]> {
  const rows = await run<AttemptRow>(
    db,
    `SELECT lease_token, attempt, agent_id, started_at, ended_at, outcome, error FROM outpost_job_attempts WHERE job_id = ? ORDER BY started_at, attempt, CASE WHEN ended_at IS NULL THEN 1 ELSE 0 END, ended_at LIMIT ${MAX_SHOWN}`,
    [job.id],
  );
  const iso = (v: number | string | null) => (v === null ? null : new Date(num(v)).toISOString());
  return rows.map((r) => {
    let outcome = r.outcome as AttemptOutcome;
    let endedAt = iso(r.ended_at);
    if (outcome === 'running' && !(job.status === 'leased' && r.lease_token === tokens.leaseToken)) {
      outcome = job.status === 'succeeded' && r.lease_token === tokens.resultToken ? 'succeeded' : job.status === 'cancelled' ? 'cancelled' : 'unknown';
      endedAt = job.finishedAt;
    }
    return {
      attempt: num(r.attempt),
      agentId: r.agent_id,
      startedAt: iso(r.started_at),
      endedAt,
      outcome,
      error: r.error ? (JSON.parse(r.error) as JobError) : null,
    };
  });
}
