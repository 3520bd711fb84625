/** Options of an exponential backoff. */
export interface BackoffOptions {
  /** First delay ceiling. Default 1 000 ms. */
  baseMs?: number;
  /** Largest delay ceiling. Default 30 000 ms. */
  capMs?: number;
  /** Growth per attempt. Default 2. */
  factor?: number;
  /**
   * How a delay is drawn from its ceiling `c`: `'full'` (the default) draws
   * uniformly in [0, c]; a fraction `j` draws uniformly in [c, c · (1 + j)]
   * (bounded jitter: never shorter than the ceiling, never longer than 1 + j times it).
   */
  jitter?: 'full' | number;
}

/** The longest wait a server's `Retry-After` can impose (5 min): a larger value is clamped, never trusted. */
export const MAX_RETRY_AFTER_MS = 300_000;

/**
 * The agent's curve for calls to the integration-proxy: 1 s, 2 s, 4 s, 8 s,
 * then 10 s, each delay drawn in [ceiling, ceiling × 1.15].
 *
 * Why this curve (issue 9): while the proxy is down an agent must send at most
 * one request per 10 s once backed off, and be back within 12 s of the proxy's
 * return. Full jitter cannot give both: its delays reach down to 0, so a cap
 * high enough to average one request per 10 s (20 s+) leaves some delays near
 * the cap and the return slow (up to 30 s before), while a lower cap lets
 * many requests through early. Bounded jitter at a 10 s cap puts every delay
 * at the cap in [10 s, 11.5 s]: never more than one request per 10 s, and the
 * first request after the proxy's return goes at most 11.5 s later (a refused
 * connection fails in milliseconds), which leaves half a second for the
 * exchange itself. The 15 % jitter keeps the "no herd" property: agents that
 * lost the proxy at the same moment drift apart by up to 1.5 s per retry at
 * the cap (the spreads add up over an outage), so they do not come back in one
 * burst; early retries (1 s, 2 s) stay quick for short blips.
 */
export const PROXY_BACKOFF: Readonly<Required<Omit<BackoffOptions, 'jitter'>> & { jitter: number }> = Object.freeze({ baseMs: 1000, capMs: 10_000, factor: 2, jitter: 0.15 });

/**
 * Full-jitter delay for the n-th consecutive failure (n ≥ 1): a uniform draw in
 * [0, min(cap, base · factor^(n−1))]. Full jitter spreads a herd of agents
 * that all lost the proxy at the same moment.
 */
export function fullJitterDelayMs(attempt: number, opts: BackoffOptions = {}, random: () => number = Math.random): number {
  const ceiling = backoffCeilingMs(attempt, opts);
  return Math.floor(random() * ceiling);
}

/** Bounded-jitter delay for the n-th consecutive failure: a uniform draw in [c, c · (1 + jitter)], c the ceiling. */
export function boundedJitterDelayMs(attempt: number, opts: BackoffOptions & { jitter: number }, random: () => number = Math.random): number {
  const ceiling = backoffCeilingMs(attempt, opts);
  const j = Math.min(1, Math.max(0, opts.jitter));
  return Math.floor(ceiling * (1 + j * random()));
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
 * to wait now (honouring a server's `Retry-After` when larger, at most
 * MAX_RETRY_AFTER_MS); `reset()` after a success.
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
    const { jitter = 'full' } = this.opts;
    const d = jitter === 'full' ? fullJitterDelayMs(this.failures, this.opts, this.random) : boundedJitterDelayMs(this.failures, { ...this.opts, jitter }, this.random);
    // A proxy's Retry-After is an input like any other: NaN, negative or a month must not stall or spin us.
    const asked = retryAfterMs !== undefined && !Number.isNaN(retryAfterMs) ? Math.min(MAX_RETRY_AFTER_MS, Math.max(0, retryAfterMs)) : undefined;
    return asked !== undefined && asked > d ? asked : d;
  }

  reset(): void {
    this.failures = 0;
  }
}
