import type { Clock } from '../util/clock.js';

/**
 * In-process watchers of single jobs, for `GET /v1/jobs/{id}?waitMs`: the
 * store calls `changed(id)` on every state change made by this replica;
 * changes made by another replica are caught by the caller's periodic re-read.
 */
export class JobWatch {
  private readonly watchers = new Map<string, Set<() => void>>();
  private stopped = false;

  constructor(private readonly deps: { clock: Clock }) {}

  changed(id: string): void {
    const set = this.watchers.get(id);
    if (!set) return;
    this.watchers.delete(id);
    for (const fn of set) fn();
  }

  /** Resolves when the job changes, after `ms`, or at stop(). */
  wait(id: string, ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      let set = this.watchers.get(id);
      if (!set) this.watchers.set(id, (set = new Set()));
      const done = () => {
        this.deps.clock.clearTimeout(timer);
        this.watchers.get(id)?.delete(done);
        if (this.watchers.get(id)?.size === 0) this.watchers.delete(id);
        resolve();
      };
      const timer = this.deps.clock.setTimeout(done, ms);
      set.add(done);
    });
  }

  /** Releases every waiting reader. Idempotent. */
  stop(): void {
    this.stopped = true;
    for (const set of [...this.watchers.values()]) for (const fn of [...set]) fn();
    this.watchers.clear();
  }
}
