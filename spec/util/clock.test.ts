import { describe, expect, it } from '@jest/globals';
import { sleep, systemClock, timeoutSignal } from '../../lib/util/clock.js';
import { FakeClock } from '../fixtures/fake-clock.js';
import type { OutpostError } from '../../lib/util/errors.js';

describe('FakeClock', () => {
  it('fires timers in order only when time moves', async () => {
    const clock = new FakeClock(0);
    const seen: string[] = [];
    void sleep(clock, 200).then(() => seen.push('b'));
    void sleep(clock, 100).then(() => seen.push('a'));
    await clock.advance(99);
    expect(seen).toEqual([]);
    await clock.advance(150);
    expect(seen).toEqual(['a', 'b']);
    expect(clock.now()).toBe(249);
  });
  it('sleep rejects on abort and clears its timer', async () => {
    const clock = new FakeClock(0);
    const ac = new AbortController();
    const p = sleep(clock, 1000, ac.signal);
    ac.abort(new Error('stop'));
    await expect(p).rejects.toThrow('stop');
    expect(clock.pending).toBe(0);
  });
});

describe('monotonic time', () => {
  it('FakeClock moves monotonic time with advance, on a base far from its wall time', async () => {
    const clock = new FakeClock(1_700_000_000_000);
    expect(clock.monotonicMs()).toBe(0);
    await clock.advance(1500);
    expect(clock.monotonicMs()).toBe(1500);
    expect(clock.now()).toBe(1_700_000_001_500);
  });

  it('a wall clock jump moves neither monotonic time nor timers', async () => {
    const clock = new FakeClock(0);
    let fired = false;
    void sleep(clock, 1000).then(() => (fired = true));
    clock.jumpWall(-60_000);
    expect(clock.now()).toBe(-60_000);
    expect(clock.monotonicMs()).toBe(0);
    await clock.advance(999);
    expect(fired).toBe(false);
    await clock.advance(1);
    expect(fired).toBe(true);
    clock.jumpWall(3_600_000);
    expect(clock.monotonicMs()).toBe(1000);
  });

  it('the system clock counts on performance.now: never backwards', () => {
    let last = systemClock.monotonicMs();
    for (let i = 0; i < 1000; i++) {
      const t = systemClock.monotonicMs();
      expect(t).toBeGreaterThanOrEqual(last);
      last = t;
    }
  });
});

describe('timeoutSignal', () => {
  it('aborts with a retryable timeout on the clock, and clear() leaves no timer', async () => {
    const clock = new FakeClock(0);
    const t = timeoutSignal(clock, 2000, 'the heartbeat');
    await clock.advance(1999);
    expect(t.signal.aborted).toBe(false);
    await clock.advance(1);
    expect((t.signal.reason as OutpostError).code).toBe('timeout');
    expect((t.signal.reason as OutpostError).message).toBe('the heartbeat timed out after 2000 ms');
    const u = timeoutSignal(clock, 2000);
    u.clear();
    expect(clock.pending).toBe(0);
  });
});
