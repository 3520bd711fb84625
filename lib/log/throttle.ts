/** The part of a Clock the throttle needs (lib/util/clock.ts). */
interface MonotonicClock {
  monotonicMs(): number;
}

/**
 * Rate-limits a log line per key: the first event of a key is logged at once,
 * later ones within `periodMs` are only counted, and the next line after the
 * period carries how many happened since the last line (`count`). So a flood
 * (a client retrying a bad token 1 000 times a second) is one line a minute
 * per key, and nothing is hidden: the counts add up. Keys are bounded
 * (`maxKeys`; beyond, the oldest is forgotten and its count is lost).
 */
export class LogThrottle {
  private readonly keys = new Map<string, { sinceMs: number; suppressed: number }>();

  /**
   * @param clock monotonic time (the injected Clock)
   * @param periodMs at most one line per key per this. Default 60 000 ms.
   * @param maxKeys keys remembered. Default 1 000.
   */
  constructor(
    private readonly clock: MonotonicClock,
    private readonly periodMs = 60_000,
    private readonly maxKeys = 1000,
  ) {}

  /** Counts one event of `key`; returns the count to log now, or undefined to stay quiet. */
  hit(key: string): number | undefined {
    const now = this.clock.monotonicMs();
    const s = this.keys.get(key);
    if (s && now - s.sinceMs < this.periodMs) {
      s.suppressed++;
      return undefined;
    }
    const count = (s?.suppressed ?? 0) + 1;
    this.keys.delete(key);
    // A Map iterates in insertion order: the first key is the oldest.
    const oldest = this.keys.keys().next();
    if (this.keys.size >= this.maxKeys && !oldest.done) this.keys.delete(oldest.value);
    this.keys.set(key, { sinceMs: now, suppressed: 0 });
    return count;
  }
}
