import type { Clock, TimerHandle } from '../util/clock.js';
import type { LifecycleState } from '../util/lifecycle.js';
import type { Logger } from '../log/index.js';

/** Options of the lease expiry (config keys named in parentheses). */
export interface LeaseExpiryOptions {
  /**
   * Period of the backstop pass (`reaperIntervalMs`, default 5 000 ms): it
   * expires leases whose deadline this replica did not see (claimed or
   * renewed on another PostgreSQL replica) and recovers from a failed pass.
   */
  backstopMs: number;
}

export interface LeaseExpiryDeps {
  clock: Clock;
  log: Logger;
  /** Expires every lease past its deadline (one fenced statement); returns how many. */
  reap(): Promise<number>;
  /** The earliest lease deadline in the store (wall ms), or null when nothing is leased. */
  nextExpiryAt(): Promise<number | null>;
}

/**
 * Past a deadline by this much before a pass runs: timers may fire a little
 * before `Date.now()` reaches the deadline (they run on monotonic time).
 */
const SLACK_MS = 1;

/**
 * Drives lease expiry by the next lease deadline, per replica: one timer,
 * armed at the earliest `lease_expires_at` this replica knows of. A claim or
 * renewal tells it its deadline (`deadline`), which re-arms only when it is
 * earlier than the armed one (the common case, a renewal, costs a compare);
 * releases, results and cancels only remove deadlines, so they need no
 * re-arm: the timer then fires early, expires nothing, and reads the next
 * deadline with one indexed MIN query. After every pass the timer is armed at
 * that next deadline, so a dead agent's lease is offered again at TTL + a few
 * ms instead of TTL + up to the reaper period.
 *
 * The periodic pass (`backstopMs`) stays as a backstop: it covers deadlines set
 * by other replicas (which this one learns only from its MIN query after a
 * pass) and a pass that failed. Passes never overlap: a trigger during a pass
 * runs one more pass after it.
 */
export class LeaseExpiry {
  private state: LifecycleState = 'idle';
  private armedAtMs = Number.POSITIVE_INFINITY;
  private timer: TimerHandle | undefined;
  private backstop: TimerHandle | undefined;
  private pass: Promise<void> = Promise.resolve();
  private passing = false;
  private again = false;

  constructor(
    private readonly opts: LeaseExpiryOptions,
    private readonly deps: LeaseExpiryDeps,
  ) {}

  /** Runs a first pass (leases left by an earlier run) and arms the backstop. */
  start(): void {
    if (this.state !== 'idle') return;
    this.state = 'running';
    this.scheduleBackstop();
    this.trigger();
  }

  /** A lease deadline (wall ms) was set by a claim or renewal on this replica. */
  deadline(atMs: number): void {
    if (this.state === 'running' && atMs < this.armedAtMs) this.arm(atMs);
  }

  /** The deadline the timer is armed at (wall ms), or Infinity (for tests and metrics). */
  get armedAt(): number {
    return this.armedAtMs;
  }

  /** Idempotent; waits for a running pass. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return this.pass;
    this.state = 'stopped';
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    if (this.backstop) this.deps.clock.clearTimeout(this.backstop);
    this.timer = this.backstop = undefined;
    this.armedAtMs = Number.POSITIVE_INFINITY;
    await this.pass;
  }

  private arm(atMs: number): void {
    const { clock } = this.deps;
    if (this.timer) clock.clearTimeout(this.timer);
    this.armedAtMs = atMs;
    this.timer = clock.setTimeout(() => {
      this.timer = undefined;
      this.armedAtMs = Number.POSITIVE_INFINITY;
      this.trigger();
    }, Math.max(0, atMs - clock.now()) + SLACK_MS);
  }

  private scheduleBackstop(): void {
    this.backstop = this.deps.clock.setTimeout(() => {
      if (this.state !== 'running') return;
      this.trigger();
      this.scheduleBackstop();
    }, this.opts.backstopMs);
  }

  private trigger(): void {
    if (this.state !== 'running') return;
    if (this.passing) {
      this.again = true;
      return;
    }
    this.passing = true;
    this.pass = this.runPasses().finally(() => {
      this.passing = false;
    });
  }

  private async runPasses(): Promise<void> {
    do {
      this.again = false;
      try {
        await this.deps.reap();
        const next = await this.deps.nextExpiryAt();
        if (next !== null && this.state === 'running') this.deadline(next);
      } catch (err) {
        // The backstop runs the next pass; a failing store must not spin.
        this.deps.log.error('lease expiry failed', { err });
      }
    } while (this.rerunRequested());
  }

  /** A trigger arrived during the pass (it set `again`; a method, so the check is not narrowed to the `false` set above). */
  private rerunRequested(): boolean {
    return this.again && this.state === 'running';
  }
}
