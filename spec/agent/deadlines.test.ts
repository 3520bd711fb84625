import { describe, expect, it } from '@jest/globals';
import { Deadlines } from '../../lib/agent/deadlines.js';
import { LazyAbortController } from '../../lib/agent/lazy-abort.js';
import { FakeClock, systemClock, type Clock } from '../../lib/util/clock.js';

describe('Deadlines (one clock timer for many deadlines)', () => {
  it('fires each deadline at its time, in order of due time, on one timer', async () => {
    const clock = new FakeClock();
    const d = new Deadlines(clock);
    const t0 = clock.now();
    const fired: Array<[string, number]> = [];
    d.add(300, () => fired.push(['c', clock.now() - t0]));
    d.add(100, () => fired.push(['a', clock.now() - t0]));
    d.add(200, () => fired.push(['b', clock.now() - t0]));
    d.add(200, () => fired.push(['b2', clock.now() - t0]));
    expect(clock.pending).toBe(1);
    expect(d.size).toBe(4);
    await clock.advance(99);
    expect(fired).toEqual([]);
    await clock.advance(1);
    expect(fired).toEqual([['a', 100]]);
    await clock.advance(100);
    expect(fired).toEqual([['a', 100], ['b', 200], ['b2', 200]]);
    await clock.advance(1000);
    expect(fired.map((f) => f[0])).toEqual(['a', 'b', 'b2', 'c']);
    expect(d.size).toBe(0);
    expect(clock.pending).toBe(0);
  });

  it('adding a later deadline touches no timer; an earlier one re-arms it', async () => {
    const clock = new FakeClock();
    const d = new Deadlines(clock);
    const fired: string[] = [];
    d.add(1000, () => fired.push('late'));
    d.add(2000, () => fired.push('later'));
    expect(clock.pending).toBe(1);
    d.add(10, () => fired.push('early'));
    expect(clock.pending).toBe(1);
    await clock.advance(10);
    expect(fired).toEqual(['early']);
    await clock.advance(2000);
    expect(fired).toEqual(['early', 'late', 'later']);
  });

  it('a cancelled deadline never fires; the last cancel leaves no timer behind', async () => {
    const clock = new FakeClock();
    const d = new Deadlines(clock);
    const fired: string[] = [];
    const a = d.add(100, () => fired.push('a'));
    const b = d.add(200, () => fired.push('b'));
    d.cancel(a);
    d.cancel(a);
    d.cancel(undefined);
    // The timer armed for `a` finds nothing due and re-arms for `b`.
    await clock.advance(150);
    expect(fired).toEqual([]);
    expect(clock.pending).toBe(1);
    await clock.advance(50);
    expect(fired).toEqual(['b']);
    d.cancel(b);
    const c = d.add(5000, () => fired.push('c'));
    d.cancel(c);
    expect(clock.pending).toBe(0);
    await clock.advance(10_000);
    expect(fired).toEqual(['b']);
  });

  it('a deadline already past fires on the next timer turn; callbacks may add and cancel', async () => {
    const clock = new FakeClock();
    const d = new Deadlines(clock);
    const fired: string[] = [];
    let other = 0;
    d.add(-5, () => {
      fired.push('past');
      d.cancel(other);
      d.add(50, () => fired.push('added'));
    });
    other = d.add(1, () => fired.push('cancelled'));
    expect(fired).toEqual([]);
    await clock.advance(0);
    expect(fired).toEqual(['past']);
    await clock.advance(100);
    expect(fired).toEqual(['past', 'added']);
  });

  it('counts on the monotonic time base: a wall clock set back does not postpone a deadline', async () => {
    const fake = new FakeClock();
    let wallOffsetMs = 0;
    const wall: Clock = { now: () => fake.now() + wallOffsetMs, setTimeout: (fn, ms) => fake.setTimeout(fn, ms), clearTimeout: (h) => fake.clearTimeout(h) };
    const d = new Deadlines(wall, () => fake.now());
    const fired: string[] = [];
    d.add(1000, () => fired.push('fence'));
    await fake.advance(400);
    wallOffsetMs = -60_000;
    d.add(1000, () => fired.push('later'));
    await fake.advance(600);
    expect(fired).toEqual(['fence']);
    await fake.advance(400);
    expect(fired).toEqual(['fence', 'later']);
  });

  it('runs on real timers with the system clock', async () => {
    const d = new Deadlines(systemClock);
    const fired = await new Promise<string>((resolve) => d.add(5, () => resolve('fired')));
    expect(fired).toBe('fired');
    expect(d.size).toBe(0);
  });

  it('clear forgets everything', async () => {
    const clock = new FakeClock();
    const d = new Deadlines(clock);
    const fired: string[] = [];
    d.add(10, () => fired.push('x'));
    d.clear();
    expect(clock.pending).toBe(0);
    await clock.advance(100);
    expect(fired).toEqual([]);
  });
});

describe('LazyAbortController', () => {
  it('makes no signal until asked; one made after the abort starts aborted with the reason', () => {
    const c = new LazyAbortController();
    expect(c.aborted).toBe(false);
    const reason = new Error('lost');
    c.abort(reason);
    c.abort(new Error('second'));
    expect(c.aborted).toBe(true);
    expect(c.reason).toBe(reason);
    expect(c.signal.aborted).toBe(true);
    expect(c.signal.reason).toBe(reason);
  });

  it('a signal made before the abort fires its listeners, once', () => {
    const c = new LazyAbortController();
    const signal = c.signal;
    expect(c.signal).toBe(signal);
    const seen: unknown[] = [];
    signal.addEventListener('abort', () => seen.push(signal.reason));
    c.abort('why');
    c.abort('again');
    expect(seen).toEqual(['why']);
    expect(c.reason).toBe('why');
  });

  it('aborting without a reason gives an AbortError, as AbortController does', () => {
    const c = new LazyAbortController();
    c.abort();
    expect((c.reason as DOMException).name).toBe('AbortError');
    expect(c.signal.reason).toBe(c.reason);
  });
});
