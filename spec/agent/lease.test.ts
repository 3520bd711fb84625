import { describe, expect, it } from '@jest/globals';
import { Lease, leaseOriginMs, type StopReason } from '../../lib/agent/lease.js';
import type { LeasedJob } from '../../lib/protocol/schemas.js';
import { systemClock } from '../../lib/util/clock.js';
import { FakeClock } from '../fixtures/fake-clock.js';
import type { OutpostError } from '../../lib/util/errors.js';

function job(extra: Partial<LeasedJob> = {}): LeasedJob {
  return { id: 'j1', type: 'ping', resource: null, payload: {}, attempt: 1, leaseToken: 'tok-j1-0123456789abcdef', leaseTtlMs: 30_000, timeoutMs: 300_000, ...extra };
}

function setup(extra: Partial<LeasedJob> = {}, leasedAgoMs = 0) {
  const clock = new FakeClock();
  const closed: Array<[string, StopReason | undefined]> = [];
  const lease = new Lease(job(extra), clock.monotonicMs() - leasedAgoMs, clock, (l, gone) => closed.push([l.state, gone]));
  return { clock, lease, closed };
}
const code = (l: Lease) => (l.signal.reason as OutpostError).code;

describe('leaseOriginMs: when a lease answer starts counting', () => {
  it('is the send time + heldMs', () => {
    expect(leaseOriginMs(1000, 26_000, 24_000)).toBe(25_000);
  });
  it('bounds heldMs by the round trip we measured and by 0', () => {
    expect(leaseOriginMs(1000, 26_000, 9e9)).toBe(26_000);
    expect(leaseOriginMs(1000, 26_000, -5)).toBe(1000);
    expect(leaseOriginMs(1000, 26_000, Number.NaN)).toBe(26_000);
  });
  it('falls back to the time the answer was read when the proxy sends no heldMs (older proxies)', () => {
    expect(leaseOriginMs(1000, 26_000, undefined)).toBe(26_000);
  });
});

describe('Lease: one state machine per leased job', () => {
  it('fences at origin + TTL − margin on the monotonic clock: aborts the job and ends the lease', async () => {
    const { clock, lease, closed } = setup();
    expect(lease.start()).toBe(true);
    await clock.advance(27_999);
    expect(lease.signal.aborted).toBe(false);
    await clock.advance(1);
    expect(lease.signal.aborted).toBe(true);
    expect(code(lease)).toBe('lease_lost');
    expect([lease.state, lease.stopReason]).toEqual(['ended', 'fenced']);
    expect(closed).toEqual([['ended', 'fenced']]);
    expect(clock.pending).toBe(0);
  });

  it('a wall clock set back does not postpone the fence', async () => {
    const { clock, lease } = setup();
    lease.start();
    await clock.advance(10_000);
    clock.jumpWall(-3_600_000);
    await clock.advance(18_000);
    expect(lease.stopReason).toBe('fenced');
  });

  it('a job whose fence passed before it could start is not started, even before the fence timer ran', () => {
    // What a process resumed after SIGSTOP sees: the lease answer is read before any overdue timer fires.
    const { clock, lease, closed } = setup({}, 40_000);
    expect(clock.pending).toBe(1);
    expect(lease.start()).toBe(false);
    expect([lease.state, lease.stopReason]).toEqual(['ended', 'fenced']);
    expect(lease.signal.aborted).toBe(true);
    expect(closed).toEqual([['ended', 'fenced']]);
    expect(clock.pending).toBe(0);
    expect(lease.startReporting()).toBe(false);
  });

  it('live() ends a lease whose fence passed while its result waits', async () => {
    const { clock, lease } = setup();
    lease.start();
    expect(lease.startReporting()).toBe(true);
    expect(lease.live()).toBe(true);
    await clock.advance(28_000);
    expect(lease.live()).toBe(false);
    expect([lease.state, lease.stopReason]).toEqual(['ended', 'fenced']);
    expect(() => lease.assertLive()).toThrow('self-fencing');
  });

  it('renewals move the fence from their send time, with the TTL the proxy gave', async () => {
    const { clock, lease } = setup();
    lease.start();
    await clock.advance(10_000);
    lease.renew(clock.monotonicMs() - 500, 8_000); // sent 500 ms ago, TTL now 8 s: fence 9.5 s − 2 s from now
    expect(lease.fenceAtMs - clock.monotonicMs()).toBe(5_500);
    await clock.advance(5_499);
    expect(lease.state).toBe('running');
    await clock.advance(1);
    expect(lease.stopReason).toBe('fenced');
  });

  it('times out: aborts with a retryable timeout and keeps the lease, so the failure is reported', async () => {
    const { clock, lease } = setup({ timeoutMs: 300 });
    lease.start();
    await clock.advance(300);
    expect([lease.state, lease.stopReason, code(lease)]).toEqual(['running', 'timeout', 'timeout']);
    expect((lease.signal.reason as OutpostError).retryable).toBe(true);
    expect(lease.startReporting()).toBe(true);
    expect(lease.startReporting()).toBe(false);
    lease.end();
    expect(lease.state).toBe('ended');
  });

  it('lost and cancelled end the lease; the first reason stays the stop reason', () => {
    const a = setup();
    a.lease.start();
    a.lease.stop('cancelled');
    expect([a.lease.state, a.lease.stopReason, code(a.lease)]).toEqual(['ended', 'cancelled', 'cancelled']);
    expect(a.closed).toEqual([['ended', 'cancelled']]);
    a.lease.stop('lost');
    a.lease.renew(a.clock.monotonicMs());
    expect(a.closed).toHaveLength(1);
    expect(a.clock.pending).toBe(0);

    const b = setup({ timeoutMs: 10 });
    b.lease.start();
    b.lease.stop('timeout');
    b.lease.stop('lost');
    expect([b.lease.state, b.lease.stopReason]).toEqual(['ended', 'timeout']);
    expect(b.closed).toEqual([['ended', 'lost']]);
    expect(b.lease.startReporting()).toBe(false);
  });

  it('release gives back only a running job, aborting it; a released job is never reported', () => {
    const { lease, closed, clock } = setup();
    lease.start();
    expect(lease.release()).toEqual({ jobId: 'j1', leaseToken: 'tok-j1-0123456789abcdef' });
    expect([lease.state, lease.stopReason, code(lease)]).toEqual(['released', 'shutdown', 'aborted']);
    expect(closed).toEqual([['released', undefined]]);
    expect(lease.release()).toBeUndefined();
    expect(lease.startReporting()).toBe(false);
    expect(clock.pending).toBe(0);

    const reporting = setup();
    reporting.lease.start();
    reporting.lease.startReporting();
    expect(reporting.lease.release()).toBeUndefined();
    expect(reporting.lease.state).toBe('reporting');
  });

  it('starts once, and not after a stop', () => {
    const { lease } = setup();
    expect(lease.start()).toBe(true);
    expect(lease.start()).toBe(false);
    const other = setup();
    other.lease.stop('shutdown');
    expect(other.lease.start()).toBe(false);
  });

  it('a TTL or timeout beyond the 32-bit timer range does not fire at once', async () => {
    const lease = new Lease(job({ leaseTtlMs: 9e9, timeoutMs: 9e9 }), systemClock.monotonicMs(), systemClock);
    expect(lease.start()).toBe(true);
    await new Promise((r) => setTimeout(r, 30));
    expect(lease.signal.aborted).toBe(false);
    lease.end();
  });
});
