import type { Clock, TimerHandle } from '../util/clock.js';
import type { Logger } from '../log/index.js';

/** Why a parked poll stopped waiting. */
export type WaitOutcome = 'woken' | 'timeout' | 'closed' | 'stopped';

/** Options of the long-poll waiters. */
export interface WaitersOptions {
  /**
   * Period of the re-check of pools with parked polls: the backstop for a
   * missed wake-up (a NOTIFY lost with its connection, a retry whose backoff
   * ended on another replica). Default 2 000 ms.
   */
  recheckMs?: number;
}

export interface WaitersDeps {
  clock: Clock;
  log: Logger;
  /** Resources of the jobs of a pool leasable now, at most `cap` per resource. */
  recheck(pool: string, cap: number): Promise<Array<string | null>>;
}

interface Waiter {
  resources: ReadonlySet<string>;
  settle(outcome: WaitOutcome): void;
}

/**
 * Parked lease polls per pool, in process. A job that becomes available wakes
 * the longest-waiting poll that fits its resource, one poll per job, so a
 * burst of work wakes no herd and an idle poll hears of work at once.
 */
export class Waiters {
  private readonly pools = new Map<string, Set<Waiter>>();
  private readonly generations = new Map<string, number>();
  private readonly timers = new Set<TimerHandle>();
  private recheckTimer: TimerHandle | undefined;
  private readonly rechecks = new Map<string, Promise<void>>();
  private stopped = false;
  private readonly recheckMs: number;

  constructor(
    opts: WaitersOptions,
    private readonly deps: WaitersDeps,
  ) {
    this.recheckMs = opts.recheckMs ?? 2000;
  }

  /** Number of parked polls (for tests and the benchmark). */
  get parked(): number {
    let n = 0;
    for (const set of this.pools.values()) n += set.size;
    return n;
  }

  /** Parked polls of one pool (the parked-polls quota). */
  parkedIn(pool: string): number {
    return this.pools.get(pool)?.size ?? 0;
  }

  /**
   * Changes whenever work is announced for a pool. A poller reads it before
   * its claim and claims again instead of parking when it moved, so work
   * announced while the claim ran is not missed.
   */
  generation(pool: string): number {
    return this.generations.get(pool) ?? 0;
  }

  /** Parks until woken, `ms` pass, `signal` aborts (the client left) or stop(). */
  wait(pool: string, resources: ReadonlySet<string>, ms: number, signal: AbortSignal): Promise<WaitOutcome> {
    if (this.stopped) return Promise.resolve('stopped');
    if (signal.aborted) return Promise.resolve('closed');
    return new Promise((resolve) => {
      let set = this.pools.get(pool);
      if (!set) this.pools.set(pool, (set = new Set()));
      const pooled = set;
      const onAbort = () => waiter.settle('closed');
      const timer = this.deps.clock.setTimeout(() => waiter.settle('timeout'), ms);
      const waiter: Waiter = {
        resources,
        settle: (outcome) => {
          pooled.delete(waiter);
          if (!pooled.size && this.pools.get(pool) === pooled) this.pools.delete(pool);
          this.deps.clock.clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
          resolve(outcome);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      pooled.add(waiter);
    });
  }

  /** Jobs of `pool` became available: wakes one fitting poll per job, oldest first. */
  available(pool: string, resources: ReadonlyArray<string | null>): void {
    this.generations.set(pool, this.generation(pool) + 1);
    const set = this.pools.get(pool);
    if (!set) return;
    for (const r of resources) {
      if (!set.size) return;
      for (const w of set) {
        if (r === null || w.resources.has(r)) {
          w.settle('woken');
          break;
        }
      }
    }
  }

  /** A job becomes available at `atMs` (a retry after backoff): wake a poll then. */
  availableAt(pool: string, resource: string | null, atMs: number): void {
    if (this.stopped) return;
    const handle = this.deps.clock.setTimeout(() => {
      this.timers.delete(handle);
      this.available(pool, [resource]);
    }, Math.max(0, atMs - this.deps.clock.now()));
    this.timers.add(handle);
  }

  /** Starts the periodic re-check. */
  start(): void {
    this.stopped = false;
    this.scheduleRecheck();
  }

  private scheduleRecheck(): void {
    if (this.stopped) return;
    this.recheckTimer = this.deps.clock.setTimeout(() => {
      void this.recheckAll().finally(() => this.scheduleRecheck());
    }, this.recheckMs);
  }

  private async recheckAll(): Promise<void> {
    for (const pool of [...this.pools.keys()]) await this.recheckPool(pool);
  }

  /**
   * Looks for leasable work of one pool and wakes fitting polls. Called by a
   * poll that was woken but took nothing (another poll took the job, or its
   * client left), so that the wake-up passes on instead of waiting for the
   * periodic re-check. Concurrent calls for a pool share one query.
   */
  recheckPool(pool: string): Promise<void> {
    const running = this.rechecks.get(pool);
    if (running) return running;
    const p = (async () => {
      const set = this.pools.get(pool);
      if (!set?.size || this.stopped) return;
      try {
        const resources = await this.deps.recheck(pool, set.size);
        if (resources.length) this.available(pool, resources);
      } catch (err) {
        this.deps.log.warn('waiters: re-check failed', { pool, err });
      }
    })().finally(() => this.rechecks.delete(pool));
    this.rechecks.set(pool, p);
    return p;
  }

  /** Answers every parked poll (`stopped`) and cancels timers. Idempotent. */
  stop(): void {
    this.stopped = true;
    if (this.recheckTimer) this.deps.clock.clearTimeout(this.recheckTimer);
    for (const t of this.timers) this.deps.clock.clearTimeout(t);
    this.timers.clear();
    for (const set of [...this.pools.values()]) for (const w of [...set]) w.settle('stopped');
  }
}
