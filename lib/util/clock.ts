import { performance } from 'node:perf_hooks';
import { abortReason } from './abort.js';
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
    if (signal?.aborted) {
      reject(abortReason(signal));
      return;
    }
    const onAbort = () => {
      clock.clearTimeout(handle);
      if (signal) reject(abortReason(signal));
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
