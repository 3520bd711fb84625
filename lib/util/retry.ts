import { Backoff } from './backoff.js';
import { sleep, type Clock } from './clock.js';
import { coerceError, type OutpostError } from './errors.js';

/** Options of `retry`. */
export interface RetryOptions {
  /** The clock the waits run on (tests pass a FakeClock and move time). */
  clock: Clock;
  /**
   * The delays between attempts; `retry` calls `next(err.retryAfterMs)` after
   * each failure (so a server's Retry-After, clamped by Backoff, wins when
   * larger) and `reset()` after a success. Pass one instance to share the
   * failure count across calls. Default `new Backoff()`: 1 s → 30 s, ×2, full jitter.
   */
  backoff?: Backoff;
  /**
   * Stops the retries: no attempt starts and no wait goes on once it aborts.
   * A wait cut short rejects with the signal's reason; an attempt that failed
   * while it was aborted rejects with that attempt's error. Default none.
   */
  signal?: AbortSignal;
  /**
   * Whether a failure is worth another attempt (`err` is already an
   * OutpostError, see `coerceError`). Default: `err.retryable`.
   */
  shouldRetry?: (err: OutpostError, attempt: number) => boolean;
  /** Called before each wait, for a log line or a metric. Default none. */
  onRetry?: (err: OutpostError, delayMs: number, attempt: number) => void;
  /** Longest single wait, whatever the backoff or Retry-After say. Default none. */
  maxDelayMs?: number;
  /**
   * Gives up (rejecting with the last error) when the next attempt could not
   * start within this many ms of the first one, on the clock's monotonic time.
   * Default none (until `shouldRetry` says no or the signal aborts).
   */
  deadlineMs?: number;
  /** Gives up after this many attempts (the first one included). Default unlimited. */
  maxAttempts?: number;
}

/**
 * Calls `fn(attempt)` (attempt 1, 2, …) until it resolves, waiting on
 * `opts.clock` between failures as `opts.backoff` says. Rejects with the
 * failing attempt's own error (not rewritten: callers map it once) when
 * `shouldRetry` says no, the attempts or the deadline run out, or the signal
 * aborted; with the signal's reason when it aborts during a wait.
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  const { clock, signal } = opts;
  const backoff = opts.backoff ?? new Backoff();
  const shouldRetry = opts.shouldRetry ?? ((e: OutpostError) => e.retryable);
  const startedAtMs = clock.monotonicMs();
  for (let attempt = 1; ; attempt++) {
    signal?.throwIfAborted();
    try {
      const value = await fn(attempt);
      backoff.reset();
      return value;
    } catch (err) {
      if (signal?.aborted) throw err;
      if (opts.maxAttempts !== undefined && attempt >= opts.maxAttempts) throw err;
      const e = coerceError(err);
      if (!shouldRetry(e, attempt)) throw err;
      let delayMs = backoff.next(e.retryAfterMs);
      if (opts.maxDelayMs !== undefined) delayMs = Math.min(delayMs, opts.maxDelayMs);
      if (opts.deadlineMs !== undefined && clock.monotonicMs() + delayMs - startedAtMs >= opts.deadlineMs) throw err;
      opts.onRetry?.(e, delayMs, attempt);
      await sleep(clock, delayMs, signal);
    }
  }
}
