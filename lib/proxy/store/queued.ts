import type { Clock } from '../../util/clock.js';
import { run, type Db } from './db.js';
import { num } from './rows.js';

/** Options of the queued-jobs quota. */
export interface QueuedQuotaOptions {
  /** Queued jobs allowed per pool. */
  limit: number;
  /**
   * How long a count stays trusted before it is read again: what other
   * replicas enqueue meanwhile is seen this late. Default 5 000 ms.
   */
  refreshMs?: number;
}

interface PoolCount {
  /** Queued jobs counted at `atMs`. */
  counted: number;
  atMs: number;
  /** Jobs admitted since (or in flight at) the count: over-counted, never under-counted. */
  since: number;
  /** Admitted jobs whose INSERT has not finished yet. */
  pending: number;
}

/**
 * The queued-jobs quota without a COUNT per enqueue: a per-pool estimate
 * (last count + what this process admitted since) that may only over-count,
 * so it admits cheaply while far from the limit and counts exactly (one
 * indexed COUNT on the partial index of queued jobs) only when the estimate
 * says the limit is near, or every `refreshMs`. Jobs leased meanwhile make
 * the estimate high, which costs an extra count, never an extra job. Across
 * replicas the bound is as good as the last count (`refreshMs`).
 */
export class QueuedQuota {
  private readonly pools = new Map<string, PoolCount>();
  /** Jobs ever admitted per pool: tells a recount what was admitted while it ran. */
  private readonly reserved = new Map<string, number>();
  private readonly refreshMs: number;

  constructor(
    private readonly opts: QueuedQuotaOptions,
    private readonly deps: { db: Db; clock: Clock },
  ) {
    this.refreshMs = opts.refreshMs ?? 5000;
  }

  get limit(): number {
    return this.opts.limit;
  }

  /**
   * Reserves room for `n` new jobs of `pool`: the number of queued jobs
   * counted when it does not fit (the caller refuses), else null. Call
   * `settle(pool, n)` once the INSERT has finished or failed.
   */
  async admit(pool: string, n: number): Promise<number | null> {
    let c = this.pools.get(pool);
    if (!c || this.deps.clock.now() - c.atMs > this.refreshMs) c = await this.recount(pool);
    if (c.counted + c.since + n > this.opts.limit) {
      c = await this.recount(pool);
      if (c.counted + c.since + n > this.opts.limit) return c.counted + c.since;
    }
    // No await between the last check and the reservation: concurrent requests see it.
    c.since += n;
    c.pending += n;
    this.reserved.set(pool, (this.reserved.get(pool) ?? 0) + n);
    return null;
  }

  settle(pool: string, n: number): void {
    const c = this.pools.get(pool);
    if (c) c.pending = Math.max(0, c.pending - n);
  }

  private async recount(pool: string): Promise<PoolCount> {
    const prev = this.pools.get(pool);
    const pendingAtStart = prev?.pending ?? 0;
    const reservedAtStart = this.reserved.get(pool) ?? 0;
    const [row] = await run<{ n: number | string }>(
      this.deps.db,
      `SELECT COUNT(*) AS n FROM outpost_jobs WHERE pool = ? AND status = 'queued'`,
      [pool],
    );
    // Jobs in flight when the count started may or may not be in it: counted again (safe side).
    const madeSince = Math.max(0, (this.reserved.get(pool) ?? 0) - reservedAtStart);
    const c: PoolCount = {
      counted: num(row?.n),
      atMs: this.deps.clock.now(),
      since: pendingAtStart + madeSince,
      pending: (this.pools.get(pool)?.pending ?? 0),
    };
    if (this.pools.size > 100_000) {
      // Forgetting a pool is safe: it is counted again on its next enqueue.
      this.pools.clear();
      this.reserved.clear();
    }
    this.pools.set(pool, c);
    return c;
  }
}
