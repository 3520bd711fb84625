import type { Clock, TimerHandle } from '../util/clock.js';
import type { LifecycleState } from '../util/lifecycle.js';
import type { Logger } from '../log/index.js';

/** Options of the sweep (config `retention.*`). */
export interface SweeperOptions {
  /** Finished jobs and their output are deleted this long after they finished. Default (config) 7 days. */
  finishedJobsMs: number;
  /** Agents not seen for this long are deleted. Default (config) 7 days. */
  offlineAgentsMs: number;
  /** Period of the sweep. Default (config) 10 000 ms. */
  sweepIntervalMs: number;
  /** Rows per statement. Default (config) 1 000. */
  batchSize: number;
}

export interface SweeperDeps {
  clock: Clock;
  log: Logger;
  /** Ends queued jobs past their expiry (`failed`/`expired`), up to `batch`; returns how many. */
  expireQueued(batch: number): Promise<number>;
  /** Deletes up to `batch` jobs (per pool) finished more than `olderThanMs` ago; returns how many. */
  deleteFinished(olderThanMs: number, batch: number): Promise<number>;
  /** Deletes up to `batch` agents not seen for `olderThanMs`; returns how many. */
  deleteOfflineAgents(olderThanMs: number, batch: number): Promise<number>;
  /** Told what each pass did (metrics). */
  swept?(counts: { expired: number; jobs: number; agents: number }): void;
}

/** Batches per kind and pass: a backlog (a first start on an old store) is worked off over several passes. */
const MAX_BATCHES_PER_PASS = 100;

/**
 * The periodic sweep, on the injected clock: queued jobs past their expiry
 * end `failed`/`expired`; finished jobs (with their output) and offline
 * agents past retention are deleted, a batch per statement, yielding to the
 * event loop between batches so that requests are served meanwhile. On
 * PostgreSQL every replica sweeps; the statements are idempotent, and the
 * expiry skips rows another transaction holds.
 */
export class Sweeper {
  private state: LifecycleState = 'idle';
  private timer: TimerHandle | undefined;
  private pass: Promise<void> = Promise.resolve();

  constructor(
    private readonly opts: SweeperOptions,
    private readonly deps: SweeperDeps,
  ) {}

  start(): void {
    if (this.state !== 'idle') return;
    this.state = 'running';
    this.schedule();
  }

  private schedule(): void {
    if (this.state !== 'running') return;
    this.timer = this.deps.clock.setTimeout(() => {
      this.pass = this.sweepOnce()
        .then(
          () => undefined,
          (err: unknown) => {
            this.deps.log.error('sweep failed', { err });
          },
        )
        .finally(() => this.schedule());
    }, this.opts.sweepIntervalMs);
  }

  /** One pass of every kind (also for tests). Returns what it did. */
  async sweepOnce(): Promise<{ expired: number; jobs: number; agents: number }> {
    const { batchSize } = this.opts;
    const expired = await this.drain(() => this.deps.expireQueued(batchSize));
    const jobs = await this.drain(() => this.deps.deleteFinished(this.opts.finishedJobsMs, batchSize));
    const agents = await this.drain(() => this.deps.deleteOfflineAgents(this.opts.offlineAgentsMs, batchSize));
    const counts = { expired, jobs, agents };
    if (expired || jobs || agents) this.deps.log.info('sweep', counts);
    this.deps.swept?.(counts);
    return counts;
  }

  private async drain(batch: () => Promise<number>): Promise<number> {
    let total = 0;
    for (let i = 0; i < MAX_BATCHES_PER_PASS && this.state !== 'stopped'; i++) {
      const n = await batch();
      total += n;
      if (n < this.opts.batchSize) break;
      await new Promise<void>((r) => setImmediate(r));
    }
    return total;
  }

  /** Stops the timer and waits for a pass in progress. Idempotent. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    await this.pass;
  }
}
