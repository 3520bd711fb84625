import type { Db } from './db.js';
import { run } from './db.js';

/** A count per pool (and status), for the proxy's metrics. */
export interface PoolCount {
  pool: string;
  status: string;
  n: number;
}

/**
 * Read-only aggregates for `/metrics`, computed at scrape time (a scrape every
 * 15–60 s costs one indexed GROUP BY; nothing is counted on the hot path).
 */
export class StatsStore {
  constructor(private readonly deps: { db: Db }) {}

  /** Open jobs per pool and status (queued, leased). */
  async queueDepth(): Promise<PoolCount[]> {
    const rows = await run<{ pool: string; status: string; n: number | string }>(
      this.deps.db,
      `SELECT pool, status, COUNT(*) AS n FROM outpost_jobs WHERE status IN ('queued', 'leased') GROUP BY pool, status`,
      [],
    );
    return rows.map((r) => ({ pool: r.pool, status: r.status, n: Number(r.n) }));
  }
}
