import type { Db } from './db.js';
import { run } from './db.js';

/** A count per pool (and status), for the proxy's metrics. */
export interface PoolCount {
  pool: string;
  status: string;
  n: number;
}

/**
 * Read-only aggregates for `/metrics`, computed at scrape time (nothing is
 * counted on the hot path). Each count reads only the index entries of open
 * jobs (the partial indexes of queued and of leased jobs), never a finished job, so a scrape costs the same with a
 * million finished jobs kept.
 */
export class StatsStore {
  constructor(private readonly deps: { db: Db }) {}

  /** Open jobs per pool and status (queued, leased). */
  async queueDepth(): Promise<PoolCount[]> {
    const out: PoolCount[] = [];
    for (const status of ['queued', 'leased'] as const) {
      // SQLite is told the partial index: left to itself it counts leased jobs by scanning every job (measured).
      const hint = this.deps.db.dialect === 'sqlite' ? `INDEXED BY outpost_jobs_${status}` : '';
      const rows = await run<{ pool: string; n: number | string }>(
        this.deps.db,
        `SELECT pool, COUNT(*) AS n FROM outpost_jobs ${hint} WHERE status = '${status}' GROUP BY pool`,
      );
      for (const r of rows) out.push({ pool: r.pool, status, n: Number(r.n) });
    }
    return out;
  }

  /** Stored output bytes per pool (the counter the output quota checks). */
  async outputBytes(): Promise<Array<{ pool: string; n: number }>> {
    const rows = await run<{ pool: string; n: number | string }>(this.deps.db, 'SELECT pool, output_bytes AS n FROM outpost_pool_usage', []);
    return rows.map((r) => ({ pool: r.pool, n: Number(r.n) }));
  }
}
