import { describe, expect, it } from '@jest/globals';
import { LeaseLoop } from '../../lib/agent/loop.js';
import { silentLogger } from '../../lib/log/index.js';
import { Backoff } from '../../lib/util/backoff.js';
import { FakeClock, flushMicrotasks } from '../fixtures/fake-clock.js';
import { OutpostError } from '../../lib/util/errors.js';
import { FakeLease, job } from './fake-lease.js';

function setup(concurrency = 4) {
  const clock = new FakeClock();
  const api = new FakeLease();
  const finish = new Map<string, () => void>();
  const loop = new LeaseLoop(
    {
      api,
      clock,
      log: silentLogger(),
      run: (j) => new Promise<void>((r) => finish.set(j.id, r)),
    },
    { agentId: 'a1', hostname: 'h', version: '0', resources: ['r1'], concurrency, waitMs: 25_000, backoff: new Backoff({}, () => 0.5) },
  );
  return { clock, api, loop, finish };
}

describe('LeaseLoop', () => {
  it('keeps one poll in flight asking for exactly the free slots', async () => {
    const { api, loop, finish } = setup(4);
    loop.start();
    await flushMicrotasks();
    expect(api.open).toBe(1);
    // The first poll asks for no hold (a quick first contact for /readyz); the next ones hold.
    expect(api.requests[0]).toMatchObject({ max: 4, waitMs: 0, resources: ['r1'], agentId: 'a1' });
    api.answer([]);
    await flushMicrotasks();
    expect(api.requests[1]).toMatchObject({ max: 4, waitMs: 25_000 });
    api.requests.shift();
    api.answer([job('a'), job('b'), job('c')]);
    await flushMicrotasks();
    expect(loop.running).toBe(3);
    expect(api.open).toBe(1);
    expect(api.requests[1]!.max).toBe(1);
    api.answer([job('d')]);
    await flushMicrotasks();
    // All slots taken: no poll until one frees.
    expect(loop.running).toBe(4);
    expect(api.requests).toHaveLength(2);
    finish.get('b')!();
    await flushMicrotasks();
    expect(api.requests).toHaveLength(3);
    expect(api.requests[2]!.max).toBe(1);
    const stopped = loop.stop();
    for (const f of finish.values()) f();
    await stopped;
    await loop.idle();
    expect(loop.state).toBe('stopped');
  });

  it('backs off after failures (no hot loop) and resets after a success', async () => {
    const { clock, api, loop } = setup();
    loop.start();
    await flushMicrotasks();
    api.fail(new OutpostError('unavailable', 'refused', { retryable: true }));
    await flushMicrotasks();
    expect(api.requests).toHaveLength(1);
    await clock.advance(499);
    expect(api.requests).toHaveLength(1);
    await clock.advance(1); // 0.5 × 1 s
    expect(api.requests).toHaveLength(2);
    api.fail(new OutpostError('unauthorized', 'bad token'));
    await clock.advance(999);
    expect(api.requests).toHaveLength(2);
    await clock.advance(1); // 0.5 × 2 s: 401 is not retryable, but the loop never gives up
    expect(api.requests).toHaveLength(3);
    api.fail(new OutpostError('rate_limited', 'slow down', { retryable: true, retryAfterMs: 9000 }));
    await clock.advance(8999);
    expect(api.requests).toHaveLength(3);
    await clock.advance(1);
    expect(api.requests).toHaveLength(4);
    await loop.stop();
  });

  it('stop aborts the open poll at once', async () => {
    const { api, loop } = setup();
    loop.start();
    await flushMicrotasks();
    expect(api.open).toBe(1);
    await loop.stop();
    expect(loop.state).toBe('stopped');
  });

  it('runs at most what it asked for and releases the rest at once, unrun', async () => {
    const { api, loop, finish } = setup(2);
    loop.start();
    await flushMicrotasks();
    expect(api.requests[0]!.max).toBe(2);
    api.answer([job('a'), job('b'), job('c'), job('d'), job('b')]);
    await flushMicrotasks();
    expect([...finish.keys()]).toEqual(['a', 'b']);
    expect(loop.running).toBe(2);
    // c and d go back in one release call; the duplicate b is dropped (releasing it would release the b that runs).
    expect(api.released).toHaveLength(1);
    expect(api.released[0]!.leases.map((l) => l.jobId)).toEqual(['c', 'd']);
    // No slot is free: no new poll.
    expect(api.requests).toHaveLength(1);
    finish.get('a')!();
    await flushMicrotasks();
    expect(api.requests).toHaveLength(2);
    expect(api.requests[1]!.max).toBe(1);
    const stopped = loop.stop();
    finish.get('b')!();
    await stopped;
    await loop.idle();
    expect(loop.running).toBe(0);
    expect([...finish.keys()]).toEqual(['a', 'b']);
  });

  it('logs a crashing runner and frees its slot', async () => {
    const clock = new FakeClock();
    const api = new FakeLease();
    const loop = new LeaseLoop(
      { api, clock, log: silentLogger(), run: async () => Promise.reject(new Error('boom')) },
      { agentId: 'a1', hostname: 'h', version: '0', resources: [], concurrency: 1, waitMs: 25_000 },
    );
    loop.start();
    await flushMicrotasks();
    api.answer([job('a')]);
    await flushMicrotasks();
    expect(loop.running).toBe(0);
    expect(api.requests).toHaveLength(2);
    await loop.stop();
  });
});
