import { describe, expect, it } from '@jest/globals';
import { LeaseKeeper, fenceMarginMs, type HeartbeatApi } from '../../lib/agent/leases.js';
import { silentLogger } from '../../lib/log/index.js';
import type { HeartbeatResponse, LeasedJob, LeaseRef } from '../../lib/protocol/schemas.js';
import { FakeClock } from '../fixtures/fake-clock.js';
import { OutpostError } from '../../lib/util/errors.js';

function job(id: string, leaseTtlMs = 30_000): LeasedJob {
  return { id, type: 'ping', resource: null, payload: {}, attempt: 1, leaseToken: `tok-${id}-0123456789abcdef`, leaseTtlMs, timeoutMs: 300_000 };
}

/** A scripted heartbeat endpoint (pure logic: the keeper's timing and bookkeeping). */
class FakeHeartbeats implements HeartbeatApi {
  calls: LeaseRef[][] = [];
  answer: (refs: LeaseRef[]) => HeartbeatResponse | Promise<HeartbeatResponse> = (refs) => ({
    leases: refs.map((r) => ({ jobId: r.jobId, status: 'ok' as const, leaseTtlMs: 30_000 })),
  });
  async heartbeat(body: { agentId: string; leases: LeaseRef[] }): Promise<HeartbeatResponse> {
    this.calls.push(body.leases);
    return this.answer(body.leases);
  }
}

function setup(random = () => 0.5) {
  const clock = new FakeClock();
  const api = new FakeHeartbeats();
  const keeper = new LeaseKeeper({ api, clock, log: silentLogger() }, { agentId: 'a1', random });
  const ended: Array<[string, string]> = [];
  keeper.onEnd = (id, why) => ended.push([id, why]);
  return { clock, api, keeper, ended };
}

describe('LeaseKeeper', () => {
  it('sends ONE heartbeat for all leases every TTL/3', async () => {
    const { clock, api, keeper } = setup();
    keeper.add(job('j1'), clock.monotonicMs());
    keeper.add(job('j2'), clock.monotonicMs());
    await clock.advance(9_999);
    expect(api.calls).toHaveLength(0);
    await clock.advance(1);
    expect(api.calls).toHaveLength(1);
    expect(api.calls[0]!.map((r) => r.jobId).sort()).toEqual(['j1', 'j2']);
    await clock.advance(10_000);
    expect(api.calls).toHaveLength(2);
    keeper.stop();
  });

  it('jitters the period by ±10 %', async () => {
    const low = setup(() => 0);
    low.keeper.add(job('j1'), low.clock.monotonicMs());
    await low.clock.advance(9_000);
    expect(low.api.calls).toHaveLength(1);
    low.keeper.stop();
    const high = setup(() => 0.999);
    high.keeper.add(job('j1'), high.clock.monotonicMs());
    await high.clock.advance(10_900);
    expect(high.api.calls).toHaveLength(0);
    await high.clock.advance(100);
    expect(high.api.calls).toHaveLength(1);
    high.keeper.stop();
  });

  it('keeps a job alive past several TTLs while renewals succeed', async () => {
    const { clock, keeper, ended } = setup();
    const lease = keeper.add(job('j1'), clock.monotonicMs());
    for (let i = 0; i < 12; i++) await clock.advance(10_000);
    expect(lease.signal.aborted).toBe(false);
    expect(ended).toEqual([]);
    keeper.stop();
  });

  it('aborts on lost and on cancelled with the right reason', async () => {
    const { clock, api, keeper, ended } = setup();
    const a = keeper.add(job('j1'), clock.monotonicMs());
    const b = keeper.add(job('j2'), clock.monotonicMs());
    api.answer = () => ({ leases: [{ jobId: 'j1', status: 'lost' }, { jobId: 'j2', status: 'cancelled' }] });
    await clock.advance(10_000);
    expect((a.signal.reason as OutpostError).code).toBe('lease_lost');
    expect((b.signal.reason as OutpostError).code).toBe('cancelled');
    expect(ended.sort()).toEqual([['j1', 'lost'], ['j2', 'cancelled']]);
    expect(keeper.size).toBe(0);
  });

  it('self-fences at the lease origin (send time + heldMs) + TTL − 2 s when no renewal succeeds', async () => {
    const { clock, api, keeper, ended } = setup();
    api.answer = () => Promise.reject(new OutpostError('unavailable', 'down', { retryable: true }));
    // The poll was sent 5 s ago and the proxy claimed 1 s after it arrived: 4 s of the TTL are gone already.
    const leasedAt = clock.monotonicMs() - 4_000;
    const lease = keeper.add(job('j1'), leasedAt);
    await clock.advance(23_999);
    expect(lease.signal.aborted).toBe(false);
    await clock.advance(1);
    expect(lease.signal.aborted).toBe(true);
    expect(clock.monotonicMs() - leasedAt).toBe(30_000 - 2_000);
    expect(ended).toEqual([['j1', 'fenced']]);
    expect(keeper.size).toBe(0);
  });

  it('moves the fence with each successful renewal, counted from when it was sent', async () => {
    const { clock, api, keeper } = setup();
    const lease = keeper.add(job('j1'), clock.monotonicMs());
    await clock.advance(10_000); // renewed, sent at t=10 s → fence at 38 s
    expect(lease.fenceAtMs - clock.monotonicMs()).toBe(28_000);
    api.answer = () => Promise.reject(new OutpostError('unavailable', 'down', { retryable: true }));
    await clock.advance(27_999);
    expect(lease.signal.aborted).toBe(false);
    await clock.advance(1);
    expect(lease.signal.aborted).toBe(true);
  });

  it('a lease leaves the keeper when it ends or is released, by itself', () => {
    const { clock, keeper } = setup();
    const a = keeper.add(job('j1'), clock.monotonicMs());
    const b = keeper.add(job('j2'), clock.monotonicMs());
    a.start();
    b.start();
    expect(keeper.running()).toEqual([a, b]);
    b.startReporting();
    expect(keeper.running()).toEqual([a]);
    expect(a.release()).toBeDefined();
    expect(keeper.size).toBe(1);
    b.end();
    expect(keeper.size).toBe(0);
    keeper.stop();
  });

  it('stop lets go of what is held, with no timer left behind', async () => {
    const { clock, keeper } = setup();
    const a = keeper.add(job('j1'), clock.monotonicMs());
    a.start();
    keeper.stop();
    expect([a.state, a.stopReason]).toEqual(['released', 'shutdown']);
    expect(keeper.size).toBe(0);
    expect(clock.pending).toBe(0);
  });

  it('caps the fencing margin at a quarter of short TTLs', () => {
    expect(fenceMarginMs(30_000)).toBe(2000);
    expect(fenceMarginMs(1500)).toBe(375);
  });

  it('ignores an answer for a lease it no longer holds under that token', async () => {
    const { clock, api, keeper } = setup();
    keeper.add(job('j1'), clock.monotonicMs());
    let release: () => void = () => {};
    api.answer = (refs) =>
      new Promise((r) => {
        release = () => r({ leases: refs.map((x) => ({ jobId: x.jobId, status: 'lost' as const })) });
      });
    await clock.advance(10_000);
    keeper.get('j1')!.end();
    const again = keeper.add({ ...job('j1'), leaseToken: 'another-token-0123456789' }, clock.monotonicMs());
    release();
    await clock.advance(0);
    expect(again.signal.aborted).toBe(false);
    keeper.stop();
  });

  it('stops heartbeating when it holds nothing', async () => {
    const { clock, api, keeper } = setup();
    keeper.add(job('j1'), clock.monotonicMs()).end();
    await clock.advance(60_000);
    expect(api.calls).toHaveLength(0);
    expect(clock.pending).toBe(0);
  });
});
