import { performance } from 'node:perf_hooks';
import { systemClock, type Clock, type TimerHandle } from '../util/clock.js';

/** A deadline's handle, for `cancel`. */
export type DeadlineId = number;

/**
 * Many deadlines on ONE clock timer: job timeouts and self-fencing deadlines
 * are set and cancelled for every job, and a timer per deadline (two per job)
 * costs more than the jobs themselves at thousands per second.
 *
 * Deadlines live in an insertion-ordered map; the clock timer is armed for the
 * earliest. Adding a later deadline (the usual case: every new lease ends after
 * the ones before it) touches no timer; cancelling one leaves the timer as it
 * is, and a timer that finds nothing due re-arms for the next. The map holds
 * only live deadlines (at most the leases held), so the scan on firing is short.
 *
 * Delays are relative, as with separate timers, and counted on a monotonic
 * time base (performance.now for the system clock): a wall clock set back
 * must not postpone a self-fencing deadline past the lease's end.
 */
export class Deadlines {
  private readonly entries = new Map<DeadlineId, { atMs: number; fn: () => void }>();
  private nextId = 1;
  private timer: TimerHandle | undefined;
  private timerAtMs = Infinity;

  private readonly now: () => number;

  /**
   * @param clock Arms the one timer (tests pass a FakeClock).
   * @param monotonicNowMs Time base of the deadlines. Default: performance.now for the system clock, else `clock.now`.
   */
  constructor(
    private readonly clock: Clock,
    monotonicNowMs?: () => number,
  ) {
    this.now = monotonicNowMs ?? (clock === systemClock ? () => performance.now() : () => clock.now());
  }

  /** Deadlines pending. */
  get size(): number {
    return this.entries.size;
  }

  /** Calls `fn` after `delayMs` (on the next timer turn if it is 0 or less). */
  add(delayMs: number, fn: () => void): DeadlineId {
    const atMs = this.now() + delayMs;
    const id = this.nextId++;
    this.entries.set(id, { atMs, fn });
    if (atMs < this.timerAtMs) this.arm(atMs);
    return id;
  }

  /** Forgets a deadline; unknown or already fired ids are ignored. */
  cancel(id: DeadlineId | undefined): void {
    if (id === undefined || !this.entries.delete(id)) return;
    // No deadline left: no timer may keep the process (or a FakeClock) busy.
    if (this.entries.size === 0) this.disarm();
  }

  /** Forgets every deadline. */
  clear(): void {
    this.entries.clear();
    this.disarm();
  }

  private arm(atMs: number): void {
    this.disarm();
    this.timerAtMs = atMs;
    this.timer = this.clock.setTimeout(() => this.fire(), Math.max(0, atMs - this.now()));
  }

  private disarm(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAtMs = Infinity;
  }

  private fire(): void {
    this.timer = undefined;
    this.timerAtMs = Infinity;
    const now = this.now();
    const due: Array<{ atMs: number; fn: () => void }> = [];
    let nextAtMs = Infinity;
    for (const [id, e] of this.entries) {
      if (e.atMs <= now) {
        due.push(e);
        this.entries.delete(id);
      } else if (e.atMs < nextAtMs) nextAtMs = e.atMs;
    }
    if (nextAtMs < Infinity) this.arm(nextAtMs);
    // In order of due time, as separate timers would have fired them (sort is stable: ties keep insertion order).
    due.sort((a, b) => a.atMs - b.atMs);
    for (const e of due) e.fn();
  }
}
