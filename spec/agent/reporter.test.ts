import { describe, expect, it } from '@jest/globals';
import type { Lease } from '../../lib/agent/lease.js';
import { LeaseKeeper } from '../../lib/agent/leases.js';
import { ResultReporter, type ResultsApi } from '../../lib/agent/reporter.js';
import { silentLogger } from '../../lib/log/index.js';
import type { LeasedJob, ResultItem, ResultsRequest, ResultsResponse } from '../../lib/protocol/schemas.js';
import { Backoff } from '../../lib/util/backoff.js';
import { FakeClock } from '../fixtures/fake-clock.js';
import { OutpostError } from '../../lib/util/errors.js';

function job(id: string): LeasedJob {
  return { id, type: 'ping', resource: null, payload: {}, attempt: 1, leaseToken: `tok-${id}-0123456789abcdef`, leaseTtlMs: 30_000, timeoutMs: 300_000 };
}
const ok = (j: LeasedJob): ResultItem => ({ jobId: j.id, leaseToken: j.leaseToken, outcome: 'succeeded', result: { ok: true } });
/** A lease whose job ran and finished (the runner's part). */
function finished(keeper: LeaseKeeper, clock: FakeClock, j: LeasedJob): Lease {
  const lease = keeper.add(j, clock.monotonicMs());
  lease.start();
  return lease;
}

/** A scripted results endpoint (pure logic: batching, retry and bookkeeping). */
class FakeResults implements ResultsApi {
  calls: ResultsRequest[] = [];
  failNext: OutpostError[] = [];
  async results(body: ResultsRequest): Promise<ResultsResponse> {
    this.calls.push(body);
    const err = this.failNext.shift();
    if (err) throw err;
    return { results: body.results.map((r) => ({ jobId: r.jobId, status: 'accepted' as const })) };
  }
}

function setup() {
  const clock = new FakeClock();
  const api = new FakeResults();
  const log = silentLogger();
  const keeper = new LeaseKeeper({ api: { heartbeat: async () => ({ leases: [] }) }, clock, log }, { agentId: 'a1' });
  const reporter = new ResultReporter({ api, clock, log }, { agentId: 'a1', backoff: new Backoff({}, () => 0.5) });
  return { clock, api, keeper, reporter };
}

describe('ResultReporter', () => {
  it('sends results that finish together in one call and forgets their leases', async () => {
    const { clock, api, keeper, reporter } = setup();
    const jobs = ['a', 'b', 'c', 'd'].map(job);
    const leases = jobs.map((j) => finished(keeper, clock, j));
    jobs.forEach((j, i) => reporter.submit(leases[i]!, ok(j)));
    await clock.advance(5);
    expect(api.calls).toHaveLength(1);
    expect(api.calls[0]!.results.map((r) => r.jobId)).toEqual(['a', 'b', 'c', 'd']);
    expect(keeper.size).toBe(0);
    keeper.stop();
  });

  it('retries with backoff and keeps the lease held (and heart-beaten) meanwhile', async () => {
    const { clock, api, keeper, reporter } = setup();
    const j = job('a');
    const lease = finished(keeper, clock, j);
    api.failNext = [new OutpostError('unavailable', 'down', { retryable: true }), new OutpostError('unavailable', 'down', { retryable: true })];
    reporter.submit(lease, ok(j));
    await clock.advance(5);
    expect(api.calls).toHaveLength(1);
    expect(lease.state).toBe('reporting');
    await clock.advance(500); // first backoff: 0.5 × 1 s
    expect(api.calls).toHaveLength(2);
    await clock.advance(1000); // second: 0.5 × 2 s
    expect(api.calls).toHaveLength(3);
    expect(keeper.size).toBe(0);
    keeper.stop();
  });

  it('honours Retry-After when it is longer than the backoff', async () => {
    const { clock, api, keeper, reporter } = setup();
    const j = job('a');
    const lease = finished(keeper, clock, j);
    api.failNext = [new OutpostError('rate_limited', 'slow down', { retryable: true, retryAfterMs: 7000 })];
    reporter.submit(lease, ok(j));
    await clock.advance(5);
    await clock.advance(6999);
    expect(api.calls).toHaveLength(1);
    await clock.advance(1);
    expect(api.calls).toHaveLength(2);
    keeper.stop();
  });

  it('drops a result once its lease is no longer ours', async () => {
    const { clock, api, keeper, reporter } = setup();
    const j = job('a');
    const lease = finished(keeper, clock, j);
    api.failNext = [new OutpostError('unavailable', 'down', { retryable: true })];
    reporter.submit(lease, ok(j));
    await clock.advance(5);
    lease.stop('lost'); // e.g. the heartbeat said lost
    await clock.advance(10_000);
    expect(api.calls).toHaveLength(1);
    await reporter.flush();
  });

  it('turns a success the proxy refuses for good into a failed result, found one by one', async () => {
    const { clock, api, keeper, reporter } = setup();
    const [a, b] = [job('a'), job('b')];
    const [la, lb] = [finished(keeper, clock, a), finished(keeper, clock, b)];
    api.failNext = [new OutpostError('too_large', 'too big'), new OutpostError('too_large', 'too big')];
    reporter.submit(la, ok(a));
    reporter.submit(lb, ok(b));
    await clock.advance(5);
    await reporter.flush();
    const sizes = api.calls.map((c) => c.results.length);
    expect(sizes).toEqual([2, 1, 1, 1]);
    const last = api.calls.slice(2).flatMap((c) => c.results);
    expect(last.find((r) => r.jobId === 'a')).toMatchObject({ outcome: 'failed', error: { code: 'too_large', retryable: false } });
    expect(keeper.size).toBe(0);
  });

  it('a result whose lease passed its fence while it waited is never sent', async () => {
    const { clock, api, keeper, reporter } = setup();
    const j = job('a');
    const lease = finished(keeper, clock, j);
    api.failNext = Array.from({ length: 20 }, () => new OutpostError('unavailable', 'down', { retryable: true }));
    reporter.submit(lease, ok(j));
    await clock.advance(28_000); // TTL 30 s − 2 s margin, no renewal (the heartbeat answers nothing)
    const sent = api.calls.length;
    expect([lease.state, lease.stopReason]).toEqual(['ended', 'fenced']);
    await clock.advance(60_000);
    expect(api.calls).toHaveLength(sent);
    await reporter.flush();
    expect(reporter.pending).toBe(0);
  });

  it('queues a result once, and never for a released or stopped lease', async () => {
    const { clock, api, keeper, reporter } = setup();
    const [a, b, c] = [job('a'), job('b'), job('c')];
    const la = finished(keeper, clock, a);
    const lb = finished(keeper, clock, b);
    const lc = finished(keeper, clock, c);
    reporter.submit(la, ok(a));
    reporter.submit(la, ok(a));
    lb.release();
    reporter.submit(lb, ok(b));
    lc.stop('cancelled');
    reporter.submit(lc, ok(c));
    reporter.submit(la, ok(b)); // another job's result under this lease
    await reporter.flush();
    expect(api.calls.map((call) => call.results.map((r) => r.jobId))).toEqual([['a']]);
  });

  it('flush resolves once everything queued is answered', async () => {
    const { clock, api, keeper, reporter } = setup();
    const j = job('a');
    reporter.submit(finished(keeper, clock, j), ok(j));
    await reporter.flush();
    expect(api.calls).toHaveLength(1);
    expect(reporter.pending).toBe(0);
  });

  it('results that queue during a call wait for their own window, not a call straight after', async () => {
    const clock = new FakeClock();
    const log = silentLogger();
    const keeper = new LeaseKeeper({ api: { heartbeat: async () => ({ leases: [] }) }, clock, log }, { agentId: 'a1' });
    const calls: string[][] = [];
    const answers: Array<() => void> = [];
    const api: ResultsApi = {
      results: (body) =>
        new Promise((resolve) => {
          calls.push(body.results.map((r) => r.jobId));
          answers.push(() => resolve({ results: body.results.map((r) => ({ jobId: r.jobId, status: 'accepted' as const })) }));
        }),
    };
    const reporter = new ResultReporter({ api, clock, log }, { agentId: 'a1', coalesceMs: 5, maxBatch: 3 });
    const [a, b, c, d, e, f] = ['a', 'b', 'c', 'd', 'e', 'f'].map(job);
    const held = new Map([a, b, c, d, e, f].map((j) => [j!, finished(keeper, clock, j!)]));
    const submit = (j: LeasedJob | undefined) => reporter.submit(held.get(j!)!, ok(j!));
    submit(a);
    await clock.advance(5);
    expect(calls).toEqual([['a']]);
    await clock.advance(1);
    submit(b); // queued at +6 while the first call is in flight
    await clock.advance(1);
    answers.shift()!();
    await clock.advance(0);
    expect(calls).toHaveLength(1);
    await clock.advance(3); // +10: b has waited 4 ms
    expect(calls).toHaveLength(1);
    await clock.advance(1); // +11: its 5 ms are up
    expect(calls).toEqual([['a'], ['b']]);
    answers.shift()!();
    // A full batch does not wait.
    for (const j of [c, d, e]) submit(j);
    await clock.advance(0);
    expect(calls).toEqual([['a'], ['b'], ['c', 'd', 'e']]);
    // flush sends what waits at once.
    submit(f);
    answers.shift()!();
    const flushed = reporter.flush();
    await clock.advance(0);
    expect(calls[3]).toEqual(['f']);
    answers.shift()!();
    await flushed;
    expect(keeper.size).toBe(0);
    keeper.stop();
  });
});
