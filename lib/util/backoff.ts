/** Options of an exponential backoff with full jitter. */
export interface BackoffOptions {
  /** First delay ceiling. Default 1 000 ms. */
  baseMs?: number;
  /** Largest delay ceiling. Default 30 000 ms. */
  capMs?: number;
  /** Growth per attempt. Default 2. */
  factor?: number;
}

/**
 * Full-jitter delay for the n-th consecutive failure (n ≥ 1): a uniform draw in
 * [0, min(cap, base · factor^(n−1))]. Full jitter spreads a herd of agents
 * that all lost the proxy at the same moment.
 */
export function fullJitterDelayMs(attempt: number, opts: BackoffOptions = {}, random: () => number = Math.random): number {
  const ceiling = backoffCeilingMs(attempt, opts);
  return Math.floor(random() * ceiling);
}

/** The ceiling of the n-th delay, without jitter. */
export function backoffCeilingMs(attempt: number, opts: BackoffOptions = {}): number {
  const { baseMs = 1000, capMs = 30_000, factor = 2 } = opts;
  const n = Math.max(1, Math.floor(attempt));
  return Math.min(capMs, baseMs * factor ** (n - 1));
}

/** DESIGN "retry delay": min(5 min, 2 s · 2^(attempt−1)), full jitter. */
export function jobRetryDelayMs(attempt: number, random: () => number = Math.random): number {
  return fullJitterDelayMs(attempt, { baseMs: 2000, capMs: 300_000, factor: 2 }, random);
}

/**
 * A backoff that remembers consecutive failures. `next()` gives the delay
 * to wait now (honouring a server's `Retry-After` when larger); `reset()` after
 * a success.
 */
export class Backoff {
  private failures = 0;
  constructor(
    private readonly opts: BackoffOptions = {},
    private readonly random: () => number = Math.random,
  ) {}

  /** Consecutive failures so far. */
  get attempts(): number {
    return this.failures;
  }

  next(retryAfterMs?: number): number {
    this.failures++;
    const d = fullJitterDelayMs(this.failures, this.opts, this.random);
    return retryAfterMs !== undefined && retryAfterMs > d ? retryAfterMs : d;
  }

  reset(): void {
    this.failures = 0;
  }
}
