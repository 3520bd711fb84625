import { describe, expect, it } from '@jest/globals';
import { Backoff, MAX_RETRY_AFTER_MS, PROXY_BACKOFF, backoffCeilingMs, boundedJitterDelayMs, fullJitterDelayMs, jobRetryDelayMs } from '../../lib/util/backoff.js';

describe('backoff', () => {
  it('grows ×2 from 1 s and caps at 30 s', () => {
    expect([1, 2, 3, 5, 6, 10].map((n) => backoffCeilingMs(n))).toEqual([1000, 2000, 4000, 16000, 30000, 30000]);
  });
  it('draws full jitter within [0, ceiling]', () => {
    expect(fullJitterDelayMs(3, {}, () => 0)).toBe(0);
    expect(fullJitterDelayMs(3, {}, () => 0.999999)).toBe(3999);
  });
  it('job retry delay follows min(5 min, 2 s · 2^(attempt−1))', () => {
    expect(jobRetryDelayMs(1, () => 0.999999)).toBe(1999);
    expect(jobRetryDelayMs(20, () => 0.999999)).toBe(299_999);
  });
  it('honours a larger Retry-After and resets after success', () => {
    const b = new Backoff({}, () => 0.5);
    expect(b.next()).toBe(500);
    expect(b.next(10_000)).toBe(10_000);
    expect(b.attempts).toBe(2);
    b.reset();
    expect(b.next()).toBe(500);
  });
  it('clamps Retry-After to 5 minutes and ignores NaN or negative values', () => {
    const b = new Backoff({}, () => 0.5);
    expect(b.next(30 * 24 * 3600_000)).toBe(MAX_RETRY_AFTER_MS);
    expect(b.next(Infinity)).toBe(MAX_RETRY_AFTER_MS);
    expect(b.next(Number.NaN)).toBe(2000);
    expect(b.next(-5)).toBe(4000);
  });
});

describe('the proxy backoff curve (PROXY_BACKOFF)', () => {
  it('is 1, 2, 4, 8 s then 10 s, each delay in [ceiling, ceiling × 1.15]', () => {
    const lo = [1, 2, 3, 4, 5, 6, 50].map((n) => boundedJitterDelayMs(n, PROXY_BACKOFF, () => 0));
    const hi = [1, 2, 3, 4, 5, 6, 50].map((n) => boundedJitterDelayMs(n, PROXY_BACKOFF, () => 0.999999));
    expect(lo).toEqual([1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
    expect(hi).toEqual([1149, 2299, 4599, 9199, 11_499, 11_499, 11_499]);
  });

  it('at the cap every delay lies in [10 s, 11.5 s] (one request per 10 s at most; back within 12 s), and the delays spread (no herd)', () => {
    const b = new Backoff(PROXY_BACKOFF);
    for (let i = 0; i < 4; i++) b.next();
    const atCap = Array.from({ length: 5000 }, () => b.next());
    expect(Math.min(...atCap)).toBeGreaterThanOrEqual(10_000);
    expect(Math.max(...atCap)).toBeLessThan(11_500);
    // A herd that failed together spreads over the whole 1.5 s window, not one instant.
    expect(Math.max(...atCap) - Math.min(...atCap)).toBeGreaterThan(1400);
    expect(new Set(atCap.map((d) => Math.floor(d / 100))).size).toBe(15);
  });
});
