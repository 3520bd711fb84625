import type { Clock } from '../../util/clock.js';
import { atomic, marks, stmt, type Db, type Stmt } from './db.js';
import { num } from './rows.js';

export interface RetentionStoreDeps {
  db: Db;
  clock: Clock;
}

/**
 * Deletes finished jobs (succeeded, failed, cancelled) and their output
 * pages some time after they finished, a batch per transaction: the store
 * holds what the retention window holds, not every job ever run. Candidates
 * are read per pool, oldest-created first, from the (pool, created_at, id)
 * index (a job finishes after it is created, so every job finished before
 * the cutoff was created before it); no index on finished_at or one across
 * pools, which would cost every result on the hot path.
 */
export class RetentionStore {
  constructor(private readonly deps: RetentionStoreDeps) {}

  /**
   * Deletes up to `batch` jobs per pool finished more than `olderThanMs`
   * ago, with their pages; returns how many. `pools` lists the pools to
   * sweep (JobStore.pools).
   */
  async deleteFinished(pools: readonly string[], olderThanMs: number, batch: number): Promise<number> {
    let total = 0;
    for (const pool of pools) total += await this.deletePool(pool, this.deps.clock.now() - olderThanMs, Math.max(1, Math.floor(batch)));
    return total;
  }

  private async deletePool(pool: string, before: number, limit: number): Promise<number> {
    return atomic(this.deps.db, function* (): Generator<Stmt, number, unknown[]> {
      const gone = (yield stmt(
        `DELETE FROM outpost_jobs WHERE id IN
           (SELECT id FROM outpost_jobs WHERE pool = ? AND created_at < ? AND finished_at < ? AND status IN ('succeeded', 'failed', 'cancelled')
            ORDER BY created_at, id LIMIT ${limit})
         RETURNING id, output_bytes`,
        [pool, before, before],
      )) as Array<{ id: string; output_bytes: number | string | null }>;
      if (!gone.length) return 0;
      yield stmt(`DELETE FROM outpost_output WHERE job_id IN (${marks(gone.length)})`, gone.map((r) => r.id));
      yield stmt(`DELETE FROM outpost_job_attempts WHERE job_id IN (${marks(gone.length)})`, gone.map((r) => r.id));
      const bytes = gone.reduce((n, r) => n + num(r.output_bytes), 0);
      if (bytes) {
        yield stmt('UPDATE outpost_pool_usage SET output_bytes = CASE WHEN output_bytes > ? THEN output_bytes - ? ELSE 0 END WHERE pool = ?', [bytes, bytes, pool]);
      }
      return gone.length;
    });
  }
}
