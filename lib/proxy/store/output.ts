import type { Db } from './db.js';
import { query, run } from './db.js';

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

  /** Appends one page if `leaseToken` holds the job of `pool`; counts its records. */
  async append(pool: string, jobId: string, leaseToken: string, seq: number, records: readonly unknown[]): Promise<PageStatus> {
    const { db } = this.deps;
    return db.knex.transaction(async (trx) => {
      const inserted = await query<{ seq: number }>(
        trx,
        `INSERT INTO outpost_output (job_id, lease_token, seq, records, count)
         SELECT ?, ?, ?, ?, ? WHERE EXISTS
           (SELECT 1 FROM outpost_jobs WHERE id = ? AND pool = ? AND lease_token = ? AND status = 'leased')
         ON CONFLICT (job_id, lease_token, seq) DO NOTHING RETURNING seq`,
        [jobId, leaseToken, seq, JSON.stringify(records), records.length, jobId, pool, leaseToken],
      );
      if (inserted.length) {
        await trx.raw('UPDATE outpost_jobs SET output_records = output_records + ? WHERE id = ?', [records.length, jobId]);
        return 'accepted';
      }
      const [job] = await query<{ id: string }>(trx, 'SELECT id FROM outpost_jobs WHERE id = ? AND pool = ?', [jobId, pool]);
      if (!job) return 'not_found';
      const [page] = await query(trx, 'SELECT seq FROM outpost_output WHERE job_id = ? AND lease_token = ? AND seq = ?', [jobId, leaseToken, seq]);
      return page ? 'duplicate' : 'lost';
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
        'SELECT seq, records FROM outpost_output WHERE job_id = ? AND lease_token = ? AND seq > ? ORDER BY seq LIMIT ?',
        [jobId, leaseToken, after, PAGES_PER_READ],
      );
      for (const r of rows) yield JSON.parse(r.records) as unknown[];
      if (rows.length < PAGES_PER_READ) return;
      after = Number(rows[rows.length - 1]!.seq);
    }
  }
}
