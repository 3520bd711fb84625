import type { Db, Stmt } from './db.js';
import { atomic, run, stmt } from './db.js';

/** What became of an output page. */
export type PageStatus = 'accepted' | 'duplicate' | 'lost' | 'not_found';

export interface OutputStoreDeps {
  db: Db;
}

/** Pages read per query when streaming a job's output. */
const PAGES_PER_READ = 16;

/**
 * Output pages of listings, keyed by (job, lease token, seq): a repeated seq
 * is a no-op and pages of an earlier lease are never mixed with the current
 * one (the claim deletes them).
 */
export class OutputStore {
  constructor(private readonly deps: OutputStoreDeps) {}

  /** Appends one page if `leaseToken` holds the job of `pool`; counts its records. One transaction. */
  async append(pool: string, jobId: string, leaseToken: string, seq: number, records: readonly unknown[]): Promise<PageStatus> {
    return atomic(this.deps.db, function* (): Generator<Stmt, PageStatus, unknown[]> {
      const inserted = yield stmt(
        `INSERT INTO outpost_output (job_id, lease_token, seq, records, count)
         SELECT ?, ?, ?, ?, ? WHERE EXISTS
           (SELECT 1 FROM outpost_jobs WHERE id = ? AND pool = ? AND lease_token = ? AND status = 'leased')
         ON CONFLICT (job_id, lease_token, seq) DO NOTHING RETURNING seq`,
        [jobId, leaseToken, seq, JSON.stringify(records), records.length, jobId, pool, leaseToken],
      );
      if (inserted.length) {
        yield stmt('UPDATE outpost_jobs SET output_records = output_records + ? WHERE id = ?', [records.length, jobId]);
        return 'accepted';
      }
      const job = yield stmt('SELECT id FROM outpost_jobs WHERE id = ? AND pool = ?', [jobId, pool]);
      if (!job.length) return 'not_found';
      const page = yield stmt('SELECT seq FROM outpost_output WHERE job_id = ? AND lease_token = ? AND seq = ?', [jobId, leaseToken, seq]);
      return page.length ? 'duplicate' : 'lost';
    });
  }

  /**
   * The records of one lease's pages in seq order, a few pages per query, so
   * that a listing of any size streams with bounded memory.
   */
  async *records(jobId: string, leaseToken: string): AsyncGenerator<unknown[]> {
    let after = -1;
    for (;;) {
      const rows = await run<{ seq: number | string; records: string }>(
        this.deps.db,
        // A literal LIMIT: SQLite re-prepares a statement whose LIMIT is bound at every execution.
        `SELECT seq, records FROM outpost_output WHERE job_id = ? AND lease_token = ? AND seq > ? ORDER BY seq LIMIT ${PAGES_PER_READ}`,
        [jobId, leaseToken, after],
      );
      for (const r of rows) yield JSON.parse(r.records) as unknown[];
      if (rows.length < PAGES_PER_READ) return;
      after = Number(rows[rows.length - 1]!.seq);
    }
  }
}
