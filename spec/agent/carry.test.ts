import { describe, expect, it } from '@jest/globals';
import { LeaseCargo } from '../../lib/agent/carry.js';
import { LeaseKeeper } from '../../lib/agent/leases.js';
import { LeaseLoop } from '../../lib/agent/loop.js';
import { ResultReporter } from '../../lib/agent/reporter.js';
import { silentLogger } from '../../lib/log/index.js';
import type { HeartbeatResponse, LeasedJob, LeaseRef, LeaseResponse, ResultItem, ResultsRequest, ResultsResponse } from '../../lib/protocol/schemas.js';
import { Backoff } from '../../lib/util/backoff.js';
import { OutpostError } from '../../lib/util/errors.js';
import { FakeClock, flushMicrotasks } from '../fixtures/fake-clock.js';
import { FakeLease, job } from './fake-lease.js';

const ok = (j: LeasedJob): ResultItem => ({ jobId: j.id, leaseToken: j.leaseToken, outcome: 'succeeded', result: { ok: true } });
const CARRIES: LeaseResponse['carries'] = ['results', 'leases'];

/** The reporter's and keeper's own calls, scripted (pure logic: what rides where, and what comes back). */
class FakeCalls {
  results: ResultsRequest[] = [];
  heartbeats: LeaseRef[][] = [];
  async resultsCall(body: ResultsRequest): Promise<ResultsResponse> {
    this.results.push(body);
    return { results: body.results.map((r) => ({ jobId: r.jobId, status: 'accepted' as const })) };
  }
  async heartbeatCall(body: { leases: LeaseRef[] }): Promise<HeartbeatResponse> {
    this.heartbeats.push(body.leases);
    return { leases: body.leases.map((l) => ({ jobId: l.jobId, status: 'ok' as const, leaseTtlMs: 30_000 })) };
  }
}

function setup() {
  const clock = new FakeClock();
  const log = silentLogger();
  const calls = new FakeCalls();
  const keeper = new LeaseKeeper({ api: { heartbeat: (b) => calls.heartbeatCall(b) }, clock, log }, { agentId: 'a1', random: () => 0.5 });
  const reporter = new ResultReporter({ api: { results: (b) => calls.resultsCall(b) }, clock, log }, { agentId: 'a1', backoff: new Backoff({}, () => 0.5) });
  const cargo = new LeaseCargo({ reporter, keeper, clock, log });
  /** A job that ran and finished: its result queued in the reporter. */
  const finished = (id: string) => {
    const j = job(id);
    const lease = keeper.add(j, clock.monotonicMs());
    lease.start();
    reporter.submit(lease, ok(j));
    return lease;
  };
  return { clock, calls, keeper, reporter, cargo, finished };
}

describe('LeaseCargo (results and renewals on the next lease request)', () => {
  it('carries nothing until a lease answer lists carries, then takes the waiting results', async () => {
    const { clock, calls, reporter, cargo, finished } = setup();
    finished('a');
    expect(cargo.load()).toBeUndefined();
    cargo.answered(undefined, { jobs: [], carries: CARRIES });
    finished('b');
    const load = cargo.load()!;
    expect(load.body.results!.map((r) => r.jobId)).toEqual(['a', 'b']);
    expect(load.body.leases).toBeUndefined();
    // While the request is out, nothing goes out in a call of its own, even after the window.
    await clock.advance(50);
    expect(calls.results).toHaveLength(0);
    expect(reporter.pending).toBe(1);
    cargo.answered(load, { jobs: [], carries: CARRIES, results: [{ jobId: 'a', status: 'accepted' }, { jobId: 'b', status: 'lost' }] });
    expect(reporter.carried).toBe(2);
    expect(reporter.pending).toBe(0);
    await clock.advance(50);
    expect(calls.results).toHaveLength(0);
  });

  it('a result the answer does not settle, or whose call failed, is sent again at once by a results call', async () => {
    const { clock, calls, keeper, cargo, finished } = setup();
    cargo.answered(undefined, { jobs: [], carries: CARRIES });
    const a = finished('a');
    finished('b');
    const first = cargo.load()!;
    cargo.answered(first, { jobs: [], carries: CARRIES, results: [{ jobId: 'b', status: 'accepted' }] });
    expect(a.state).toBe('reporting');
    await clock.advance(0);
    expect(calls.results.map((c) => c.results.map((r) => r.jobId))).toEqual([['a']]);
    expect(a.state).toBe('ended');
    finished('c');
    const second = cargo.load()!;
    expect(cargo.failed(second, new OutpostError('unavailable', 'down', { retryable: true }))).toBe(false);
    await clock.advance(0);
    expect(calls.results.map((c) => c.results.map((r) => r.jobId))).toEqual([['a'], ['c']]);
    expect(keeper.size).toBe(0);
  });

  it('never carries a result whose lease is past its fence (dropped, as before a results call)', async () => {
    const { clock, calls, cargo, finished } = setup();
    cargo.answered(undefined, { jobs: [], carries: CARRIES });
    finished('x');
    // A request carrying x is out (a slow proxy): a's result waits for it, and no renewal gets through.
    const first = cargo.load()!;
    calls.heartbeatCall = () => Promise.reject(new OutpostError('unavailable', 'down', { retryable: true }));
    const lease = finished('a');
    // Past the fence (TTL 30 s − 2 s margin) without a renewal: the lease is no longer ours.
    await clock.advance(28_000);
    expect(lease.state).toBe('ended');
    expect(lease.stopReason).toBe('fenced');
    cargo.answered(first, { jobs: [], carries: CARRIES, results: [{ jobId: 'x', status: 'lost' }] });
    expect(cargo.load()).toBeUndefined();
    await clock.advance(10);
    expect(calls.results).toHaveLength(0);
  });

  it('after a 400 or 413 carries nothing for a while and sends what it carried with the separate calls', async () => {
    const { clock, calls, cargo, finished } = setup();
    cargo.answered(undefined, { jobs: [], carries: CARRIES });
    finished('a');
    const load = cargo.load()!;
    expect(cargo.failed(load, new OutpostError('invalid_request', 'body must NOT have additional properties'))).toBe(true);
    await clock.advance(0);
    expect(calls.results.map((c) => c.results.map((r) => r.jobId))).toEqual([['a']]);
    cargo.answered(undefined, { jobs: [], carries: CARRIES });
    finished('b');
    expect(cargo.load()).toBeUndefined();
    await clock.advance(300_000);
    finished('c');
    cargo.answered(undefined, { jobs: [], carries: CARRIES });
    expect(cargo.load()!.body.results!.map((r) => r.jobId)).toEqual(['c']);
  });

  it('renewals ride only in the window before a heartbeat is due, count from that send, and fall back to a heartbeat', async () => {
    const { clock, calls, keeper, cargo } = setup();
    cargo.answered(undefined, { jobs: [], carries: CARRIES });
    const lease = keeper.add(job('a'), clock.monotonicMs());
    lease.start();
    // Period TTL/3 = 10 s (jitter fixed at 0); the window is its last 1 s.
    await clock.advance(8_999);
    expect(cargo.load()).toBeUndefined();
    await clock.advance(1);
    const load = cargo.load()!;
    expect(load.body.leases).toEqual([lease.ref]);
    expect(load.body.results).toBeUndefined();
    await clock.advance(2_000);
    expect(calls.heartbeats).toHaveLength(0);
    cargo.answered(load, { jobs: [], carries: CARRIES, leases: [{ jobId: 'a', status: 'ok', leaseTtlMs: 30_000 }] });
    // Renewed from the request's send time (9 s), not from the answer (11 s).
    expect(lease.fenceAtMs).toBe(9_000 + 30_000 - 2_000);
    expect(keeper.carriedRenewals).toBe(1);
    // No request takes the next window: the heartbeat goes out at the period.
    await clock.advance(10_000);
    expect(calls.heartbeats).toHaveLength(1);
    // A failed carrying call sends a heartbeat of its own at once.
    await clock.advance(9_000);
    const again = cargo.load()!;
    cargo.failed(again, new OutpostError('unavailable', 'down', { retryable: true }));
    await clock.advance(0);
    expect(calls.heartbeats).toHaveLength(2);
    keeper.stop();
  });

  it('a lost or cancelled status in the carried renewals stops the job', async () => {
    const { clock, keeper, cargo } = setup();
    cargo.answered(undefined, { jobs: [], carries: CARRIES });
    const lease = keeper.add(job('a'), clock.monotonicMs());
    lease.start();
    await clock.advance(9_000);
    const load = cargo.load()!;
    cargo.answered(load, { jobs: [], carries: CARRIES, leases: [{ jobId: 'a', status: 'cancelled' }] });
    expect(lease.stopReason).toBe('cancelled');
    expect(keeper.size).toBe(0);
  });
});

describe('LeaseLoop with cargo', () => {
  function loopSetup() {
    const s = setup();
    const api = new FakeLease();
    const finish = new Map<string, () => void>();
    const loop = new LeaseLoop(
      { api, clock: s.clock, log: silentLogger(), cargo: s.cargo, run: (j) => new Promise<void>((r) => finish.set(j.id, r)) },
      { agentId: 'a1', hostname: 'h', version: '0', resources: [], concurrency: 2, waitMs: 25_000, backoff: new Backoff({}, () => 0.5) },
    );
    return { ...s, api, loop, finish };
  }
  /** Answers the open poll with `res`. */
  const answerWith = (api: FakeLease, res: LeaseResponse) => (api as unknown as { pending: Array<{ resolve(r: LeaseResponse): void }> }).pending.shift()!.resolve(res);

  it('a saturated agent sends the finished batch on its next poll, which asks for no hold', async () => {
    const { api, loop, finished } = loopSetup();
    loop.start();
    await flushMicrotasks();
    answerWith(api, { jobs: [job('j1'), job('j2')], carries: CARRIES, heldMs: 0 });
    await flushMicrotasks();
    // Both slots busy: no poll open.
    expect(api.open).toBe(0);
    // The runner's part: the jobs finish and their results are queued; then the slots free.
    finished('j1');
    finished('j2');
    (loop as unknown as { runningJobs: number }).runningJobs = 0;
    (loop as unknown as { slotWaiter?: () => void }).slotWaiter?.();
    await flushMicrotasks();
    expect(api.requests[1]).toMatchObject({ max: 2, waitMs: 0 });
    expect(api.requests[1]!.results!.map((r) => r.jobId)).toEqual(['j1', 'j2']);
    answerWith(api, { jobs: [], carries: CARRIES, results: [{ jobId: 'j1', status: 'accepted' }, { jobId: 'j2', status: 'accepted' }] });
    await flushMicrotasks();
    // Nothing carried: the next poll holds, and the empty quick answer before it caused no pause.
    expect(api.requests[2]).toMatchObject({ waitMs: 25_000 });
    expect(api.requests[2]!.results).toBeUndefined();
    await loop.stop();
  });

  it('a parked poll never holds a result back: it goes out in a results call after the window', async () => {
    const { clock, api, loop, calls, finished } = loopSetup();
    loop.start();
    await flushMicrotasks();
    answerWith(api, { jobs: [], carries: CARRIES });
    await flushMicrotasks();
    // A poll is parked (held up to 25 s); a job of this agent finishes meanwhile.
    expect(api.open).toBe(1);
    finished('x');
    await clock.advance(5);
    expect(calls.results.map((c) => c.results.map((r) => r.jobId))).toEqual([['x']]);
    expect(api.requests[1]!.results).toBeUndefined();
    await loop.stop();
  });

  it('against a proxy without carries the loop carries nothing and results use the results call', async () => {
    const { clock, api, loop, calls, finished } = loopSetup();
    loop.start();
    await flushMicrotasks();
    answerWith(api, { jobs: [job('j1'), job('j2')] });
    await flushMicrotasks();
    finished('j1');
    finished('j2');
    (loop as unknown as { runningJobs: number }).runningJobs = 0;
    (loop as unknown as { slotWaiter?: () => void }).slotWaiter?.();
    await flushMicrotasks();
    expect(api.requests[1]!.results).toBeUndefined();
    expect(api.requests[1]!.waitMs).toBe(25_000);
    await clock.advance(5);
    expect(calls.results.map((c) => c.results.map((r) => r.jobId))).toEqual([['j1', 'j2']]);
    await loop.stop();
  });

  it('stopping with a carried batch out gives it back to the reporter, whose flush sends it', async () => {
    const { clock, api, loop, calls, reporter, finished } = loopSetup();
    loop.start();
    await flushMicrotasks();
    answerWith(api, { jobs: [job('j1'), job('j2')], carries: CARRIES });
    await flushMicrotasks();
    finished('j1');
    (loop as unknown as { runningJobs: number }).runningJobs = 1;
    (loop as unknown as { slotWaiter?: () => void }).slotWaiter?.();
    await flushMicrotasks();
    expect(api.requests[1]!.results).toHaveLength(1);
    await loop.stop();
    const flushed = reporter.flush();
    await clock.advance(0);
    await flushed;
    expect(calls.results.map((c) => c.results.map((r) => r.jobId))).toEqual([['j1']]);
  });
});
