import { describe, expect, it } from '@jest/globals';
import { FakeClock, sleep } from '../../lib/util/clock.js';

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
