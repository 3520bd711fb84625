import { performance } from 'node:perf_hooks';
import { OutpostError } from './errors.js';

/**
 * Time as a dependency. Everything whose behaviour depends on time (leases,
 * backoff, presence, heartbeats) takes a Clock so that tests move time instead
 * of sleeping.
 */
export type TimerHandle = { readonly id: number } | ReturnType<typeof setTimeout>;

export interface Clock {
  /** Milliseconds since the epoch (wall time: for timestamps, never for measuring durations). */
  now(): number;
  /**
   * Milliseconds on a monotonic time base with an arbitrary origin: what a
   * lease's fence and every measured duration count on, because a wall clock
   * set back (NTP, an operator) must not move a deadline. It keeps running
   * while the process is stopped (SIGSTOP), as the proxy's clock does.
   */
  monotonicMs(): number;
  /** Runs `fn` after `ms` (timers run on monotonic time, as Node's do). */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  monotonicMs: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/**
 * Resolves after `ms` on `clock`, or rejects with the signal's reason when
 * aborted. Never leaves a timer behind.
 */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clock.clearTimeout(handle);
      reject(signal!.reason);
    };
    const handle = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * An AbortSignal that aborts after `ms` on `clock` (AbortSignal.timeout runs
 * on real time only, so FakeClock tests could not move it), with an OutpostError
 * `timeout` naming `what`. `clear()` drops the timer once the work is done.
 */
export function timeoutSignal(clock: Clock, ms: number, what = 'the operation'): { signal: AbortSignal; clear(): void } {
  const controller = new AbortController();
  const handle = clock.setTimeout(
    () => controller.abort(new OutpostError('timeout', `${what} timed out after ${Math.round(ms)} ms`, { retryable: true })),
    Math.max(0, ms),
  );
  return { signal: controller.signal, clear: () => clock.clearTimeout(handle) };
}

interface FakeTimer {
  id: number;
  /** Due time on the monotonic base. */
  at: number;
  fn: () => void;
}

/**
 * A manual clock for tests: timers fire only when `advance` moves time past
 * them, in order of due time. Its monotonic time starts at 0, far from its
 * wall time, so code that mixes the two bases fails its tests.
 */
export class FakeClock implements Clock {
  private mono = 0;
  private wallOffsetMs: number;
  private nextId = 1;
  private timers: FakeTimer[] = [];

  constructor(startMs = 1_700_000_000_000) {
    this.wallOffsetMs = startMs;
  }

  now(): number {
    return this.mono + this.wallOffsetMs;
  }

  monotonicMs(): number {
    return this.mono;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const t = { id: this.nextId++, at: this.mono + Math.max(0, ms), fn };
    this.timers.push(t);
    return { id: t.id };
  }

  clearTimeout(handle: TimerHandle): void {
    const id = (handle as { id: number }).id;
    this.timers = this.timers.filter((t) => t.id !== id);
  }

  /** Number of pending timers (for assertions). */
  get pending(): number {
    return this.timers.length;
  }

  /** Sets the wall clock forward or back by `deltaMs` (NTP, an operator); monotonic time and timers do not move. */
  jumpWall(deltaMs: number): void {
    this.wallOffsetMs += deltaMs;
  }

  /**
   * Moves time forward by `ms`, firing due timers in order and letting
   * promise callbacks run between them.
   */
  async advance(ms: number): Promise<void> {
    const target = this.mono + ms;
    for (;;) {
      await flushMicrotasks();
      this.timers.sort((a, b) => a.at - b.at || a.id - b.id);
      const next = this.timers[0];
      if (!next || next.at > target) break;
      this.timers.shift();
      this.mono = next.at;
      next.fn();
    }
    this.mono = target;
    await flushMicrotasks();
  }
}

/** Lets pending promise callbacks and I/O callbacks run. */
export async function flushMicrotasks(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
}
