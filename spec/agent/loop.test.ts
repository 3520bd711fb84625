import { describe, expect, it } from '@jest/globals';
import { LeaseLoop, type LeaseApi } from '../../lib/agent/loop.js';
import { silentLogger } from '../../lib/log/index.js';
import type { LeasedJob, LeaseRequest, LeaseResponse } from '../../lib/protocol/schemas.js';
import { Backoff } from '../../lib/util/backoff.js';
import { FakeClock, flushMicrotasks } from '../../lib/util/clock.js';
import { OutpostError } from '../../lib/util/errors.js';

function job(id: string): LeasedJob {
  return { id, type: 'ping', resource: null, payload: {}, attempt: 1, leaseToken: `tok-${id}-0123456789abcdef`, leaseTtlMs: 30_000, timeoutMs: 300_000 };
}

/** A scripted lease endpoint: each call waits until the test answers it (pure logic of the loop). */
class FakeLease implements LeaseApi {
  requests: LeaseRequest[] = [];
  private pending: Array<{ resolve: (r: LeaseResponse) => void; reject: (e: unknown) => void }> = [];
  lease(body: LeaseRequest, signal?: AbortSignal): Promise<LeaseResponse> {
    this.requests.push(body);
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
  }
  answer(jobs: LeasedJob[]): void {
    this.pending.shift()!.resolve({ jobs });
  }
  fail(err: unknown): void {
    this.pending.shift()!.reject(err);
  }
  get open(): number {
    return this.pending.length;
  }
}

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
    expect(api.requests[0]).toMatchObject({ max: 4, waitMs: 25_000, resources: ['r1'], agentId: 'a1' });
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

  it('never runs more than `concurrency` jobs, even when a proxy sends more than asked', async () => {
    const { api, loop, finish } = setup(2);
    loop.start();
    await flushMicrotasks();
    api.answer([job('a'), job('b'), job('c'), job('d')]);
    await flushMicrotasks();
    expect([...finish.keys()]).toEqual(['a', 'b']);
    expect(loop.running).toBe(4);
    // No slot is free while the surplus waits: no new poll.
    expect(api.requests).toHaveLength(1);
    finish.get('a')!();
    await flushMicrotasks();
    expect([...finish.keys()]).toEqual(['a', 'b', 'c']);
    expect(api.requests).toHaveLength(1);
    finish.get('b')!();
    finish.get('c')!();
    await flushMicrotasks();
    expect([...finish.keys()]).toEqual(['a', 'b', 'c', 'd']);
    expect(loop.running).toBe(1);
    expect(api.requests).toHaveLength(2);
    expect(api.requests[1]!.max).toBe(1);
    const stopped = loop.stop();
    finish.get('d')!();
    await stopped;
    await loop.idle();
    expect(loop.running).toBe(0);
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
