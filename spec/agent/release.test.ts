import { describe, expect, it } from '@jest/globals';
import { releaseLeases, type ReleaseApi } from '../../lib/agent/release.js';
import { silentLogger } from '../../lib/log/index.js';
import type { LeaseRef, ReleaseRequest, ReleaseResponse } from '../../lib/protocol/schemas.js';
import { Backoff } from '../../lib/util/backoff.js';
import { FakeClock } from '../fixtures/fake-clock.js';
import { OutpostError } from '../../lib/util/errors.js';

const refs = (n: number): LeaseRef[] => Array.from({ length: n }, (_, i) => ({ jobId: `j${i}`, leaseToken: `tok-${i}-0123456789abcdef` }));
const down = () => new OutpostError('unavailable', 'connection refused', { retryable: true });

/** A scripted release endpoint (pure logic: how often, when, and when it gives up). */
class FakeRelease implements ReleaseApi {
  calls: Array<{ atMs: number; jobs: number }> = [];
  constructor(
    private readonly clock: FakeClock,
    private readonly answer: (n: number, signal?: AbortSignal) => Promise<void>,
  ) {}
  async release(body: ReleaseRequest, signal?: AbortSignal): Promise<ReleaseResponse> {
    this.calls.push({ atMs: this.clock.monotonicMs(), jobs: body.leases.length });
    await this.answer(this.calls.length, signal);
    return { leases: body.leases.map((l) => ({ jobId: l.jobId, status: 'released' as const })) };
  }
}

function run(api: FakeRelease, clock: FakeClock, leases: LeaseRef[], windowMs = 5000) {
  return releaseLeases({ api, clock, log: silentLogger() }, leases, { agentId: 'a1', windowMs, backoff: new Backoff({ baseMs: 100, capMs: 1000 }, () => 0.5) });
}

describe('releaseLeases (the drain gives unfinished jobs back)', () => {
  it('retries with backoff while the proxy is briefly away, and releases', async () => {
    const clock = new FakeClock();
    const api = new FakeRelease(clock, async (n) => {
      if (n <= 3) throw down();
    });
    const done = run(api, clock, refs(2));
    await clock.advance(2000);
    expect(await done).toBe(2);
    // Full jitter at 0.5: 50, 100, 200 ms apart.
    expect(api.calls.map((c) => c.atMs)).toEqual([0, 50, 150, 350]);
    expect(clock.pending).toBe(0);
  });

  it('gives up when the window ends, leaving the leases to expire', async () => {
    const clock = new FakeClock();
    const api = new FakeRelease(clock, async () => {
      throw down();
    });
    const done = run(api, clock, refs(1), 3000);
    await clock.advance(3000);
    expect(await done).toBe(0);
    expect(api.calls.length).toBeGreaterThan(3);
    expect(api.calls.at(-1)!.atMs).toBeLessThan(3000);
    const calls = api.calls.length;
    await clock.advance(10_000);
    expect(api.calls).toHaveLength(calls);
    expect(clock.pending).toBe(0);
  });

  it('a hung call is given up after its attempt timeout and tried again', async () => {
    const clock = new FakeClock();
    const api = new FakeRelease(clock, (n, signal) =>
      n === 1 ? new Promise((_, reject) => signal!.addEventListener('abort', () => reject(signal!.reason), { once: true })) : Promise.resolve(),
    );
    const done = run(api, clock, refs(1));
    await clock.advance(3000);
    expect(await done).toBe(1);
    expect(api.calls.map((c) => c.atMs)).toEqual([0, 2050]);
  });

  it('a Retry-After beyond the window waits for the window, never spins', async () => {
    const clock = new FakeClock();
    const api = new FakeRelease(clock, async () => {
      throw new OutpostError('rate_limited', 'slow down', { retryable: true, retryAfterMs: 3_000_000_000 });
    });
    const done = run(api, clock, refs(1));
    await clock.advance(6000);
    expect(await done).toBe(0);
    expect(api.calls).toHaveLength(1);
  });

  it('sends at most 1 000 leases per call', async () => {
    const clock = new FakeClock();
    const api = new FakeRelease(clock, async () => {});
    expect(await run(api, clock, refs(2500))).toBe(2500);
    expect(api.calls.map((c) => c.jobs)).toEqual([1000, 1000, 500]);
  });
});
