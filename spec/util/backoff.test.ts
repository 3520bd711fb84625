import { describe, expect, it } from '@jest/globals';
import { Backoff, backoffCeilingMs, fullJitterDelayMs, jobRetryDelayMs } from '../../lib/util/backoff.js';

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
});
