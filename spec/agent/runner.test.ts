import { describe, expect, it } from '@jest/globals';
import type { OperationContext } from '../../lib/connectors/types.js';
import type { Dispatch } from '../../lib/agent/dispatch.js';
import { LeaseKeeper, type HeartbeatApi } from '../../lib/agent/leases.js';
import { ResultReporter, type ResultsApi } from '../../lib/agent/reporter.js';
import { JobRunner, type OutputApi } from '../../lib/agent/runner.js';
import { silentLogger } from '../../lib/log/index.js';
import type { HeartbeatResponse, LeasedJob, LeaseRef, OutputRequest, ResultItem, ResultsRequest } from '../../lib/protocol/schemas.js';
import { Backoff } from '../../lib/util/backoff.js';
import { sleep } from '../../lib/util/clock.js';
import { FakeClock } from '../fixtures/fake-clock.js';
import { OutpostError } from '../../lib/util/errors.js';

/**
 * The runner with the real keeper and reporter on a FakeClock; the proxy's
 * three endpoints are scripted (pure logic: what starts, what goes out, when).
 */
function job(id = 'j1', extra: Partial<LeasedJob> = {}): LeasedJob {
  return { id, type: 'op', resource: 'r1', payload: {}, attempt: 1, leaseToken: `tok-${id}-0123456789abcdef`, leaseTtlMs: 30_000, timeoutMs: 300_000, ...extra };
}

class FakeProxy implements HeartbeatApi, ResultsApi, OutputApi {
  heartbeatAnswer: (refs: LeaseRef[]) => HeartbeatResponse | Promise<HeartbeatResponse> = (refs) => ({
    leases: refs.map((r) => ({ jobId: r.jobId, status: 'ok' as const, leaseTtlMs: 30_000 })),
  });
  outputAnswer: (body: OutputRequest) => Promise<void> = async () => {};
  heartbeats = 0;
  reported: ResultItem[] = [];
  pages: unknown[][] = [];
  async heartbeat(body: { leases: LeaseRef[] }): Promise<HeartbeatResponse> {
    this.heartbeats++;
    return this.heartbeatAnswer(body.leases);
  }
  async results(body: ResultsRequest) {
    this.reported.push(...body.results);
    return { results: body.results.map((r) => ({ jobId: r.jobId, status: 'accepted' as const })) };
  }
  async output(_jobId: string, body: OutputRequest) {
    await this.outputAnswer(body);
    this.pages.push(body.records);
    return { status: 'accepted' as const };
  }
  /** The proxy stops answering heartbeats (it is away). */
  away(): void {
    this.heartbeatAnswer = () => Promise.reject(new OutpostError('unavailable', 'down', { retryable: true }));
  }
}

function setup(dispatch: Dispatch) {
  const clock = new FakeClock();
  const proxy = new FakeProxy();
  const log = silentLogger();
  const keeper = new LeaseKeeper({ api: proxy, clock, log }, { agentId: 'a1', random: () => 0.5 });
  const reporter = new ResultReporter({ api: proxy, clock, log }, { agentId: 'a1', backoff: new Backoff({}, () => 0.5) });
  const runner = new JobRunner({ api: proxy, clock, log, keeper, reporter, dispatch });
  const stop = () => {
    keeper.stop();
    reporter.stop();
  };
  return { clock, proxy, keeper, reporter, runner, stop };
}

/** A job that waits on the clock, honouring its signal unless told not to. */
const waits =
  (ms: number, opts: { ignoreSignal?: boolean; pages?: number } = {}): Dispatch =>
  async (_job, ctx: OperationContext) => {
    for (let i = 0; i < (opts.pages ?? 0); i++) await ctx.writePage([{ i }]);
    await sleep(clockOf(ctx), ms, opts.ignoreSignal ? undefined : ctx.signal);
    if (opts.pages) await ctx.writePage([{ i: 'last' }]);
    return { waited: ms };
  };
// The dispatch closures need the test's clock: set per test before running.
let currentClock: FakeClock;
const clockOf = (_ctx: OperationContext) => currentClock;

describe('JobRunner', () => {
  it('runs a job, reports its result and lets go of its lease once accepted', async () => {
    const t = setup(waits(1000));
    currentClock = t.clock;
    const run = t.runner.run(job(), t.clock.monotonicMs());
    await t.clock.advance(1005);
    await run;
    await t.reporter.flush();
    expect(t.proxy.reported).toEqual([{ jobId: 'j1', leaseToken: job().leaseToken, outcome: 'succeeded', result: { waited: 1000 } }]);
    expect(t.keeper.size).toBe(0);
    t.stop();
  });

  it('does not start a job whose fence passed before its queue slot opened, and reports nothing', async () => {
    let started = 0;
    const t = setup(async () => {
      started++;
      return {};
    });
    // Leased 29 s ago (a frozen process, or a long wait for a slot): the fence (TTL − 2 s) is behind us.
    await t.runner.run(job(), t.clock.monotonicMs() - 29_000);
    await t.reporter.flush();
    await t.clock.advance(60_000);
    expect(started).toBe(0);
    expect(t.proxy.reported).toEqual([]);
    expect(t.proxy.heartbeats).toBe(0);
    expect(t.keeper.size).toBe(0);
    t.stop();
  });

  it('stops a running job at its fence when no renewal succeeds, and reports nothing', async () => {
    const t = setup(waits(60_000));
    currentClock = t.clock;
    t.proxy.away();
    const run = t.runner.run(job(), t.clock.monotonicMs());
    await t.clock.advance(27_999);
    expect(t.keeper.get('j1')?.state).toBe('running');
    await t.clock.advance(1);
    await run;
    expect(t.keeper.size).toBe(0);
    await t.clock.advance(60_000);
    expect(t.proxy.reported).toEqual([]);
    t.stop();
  });

  it('sends no output page and no result after the fence, even from a job that ignores its signal', async () => {
    const t = setup(waits(40_000, { ignoreSignal: true, pages: 2 }));
    currentClock = t.clock;
    t.proxy.away();
    const run = t.runner.run(job(), t.clock.monotonicMs());
    await t.clock.advance(0);
    expect(t.proxy.pages).toEqual([[{ i: 0 }], [{ i: 1 }]]);
    await t.clock.advance(40_000);
    await run;
    expect(t.proxy.pages).toHaveLength(2);
    expect(t.proxy.reported).toEqual([]);
    t.stop();
  });

  it('keeps a long job alive while renewals succeed', async () => {
    const t = setup(waits(100_000));
    currentClock = t.clock;
    const run = t.runner.run(job(), t.clock.monotonicMs());
    await t.clock.advance(100_005);
    await run;
    await t.reporter.flush();
    expect(t.proxy.reported).toMatchObject([{ outcome: 'succeeded' }]);
    expect(t.proxy.heartbeats).toBeGreaterThanOrEqual(9);
    t.stop();
  });

  it('fails a job that outlives its timeoutMs with a retryable timeout', async () => {
    const t = setup(waits(60_000));
    currentClock = t.clock;
    const run = t.runner.run(job('j1', { timeoutMs: 500 }), t.clock.monotonicMs());
    await t.clock.advance(500);
    await run;
    await t.reporter.flush();
    expect(t.proxy.reported).toMatchObject([{ outcome: 'failed', error: { code: 'timeout', retryable: true } }]);
    t.stop();
  });

  it('stops on cancelled and on a lost lease while writing output, reporting nothing', async () => {
    const cancelled = setup(waits(60_000));
    currentClock = cancelled.clock;
    cancelled.proxy.heartbeatAnswer = (refs) => ({ leases: refs.map((r) => ({ jobId: r.jobId, status: 'cancelled' as const })) });
    const run = cancelled.runner.run(job(), cancelled.clock.monotonicMs());
    await cancelled.clock.advance(10_000);
    await run;
    expect(cancelled.keeper.size).toBe(0);
    expect(cancelled.proxy.reported).toEqual([]);
    cancelled.stop();

    const lost = setup(waits(1000, { pages: 1 }));
    currentClock = lost.clock;
    lost.proxy.outputAnswer = () => Promise.reject(new OutpostError('lease_lost', 'gone'));
    await lost.runner.run(job(), lost.clock.monotonicMs());
    await lost.clock.advance(60_000);
    expect(lost.keeper.size).toBe(0);
    expect(lost.proxy.reported).toEqual([]);
    lost.stop();
  });

  it('a job released by the drain is never reported, even if it finishes anyway', async () => {
    const t = setup(waits(1000, { ignoreSignal: true }));
    currentClock = t.clock;
    const run = t.runner.run(job(), t.clock.monotonicMs());
    await t.clock.advance(10);
    expect(t.keeper.running().map((l) => l.release())).toEqual([{ jobId: 'j1', leaseToken: job().leaseToken }]);
    await t.clock.advance(1000);
    await run;
    await t.reporter.flush();
    expect(t.proxy.reported).toEqual([]);
    t.stop();
  });

  it('a failing job is reported failed with its error code', async () => {
    const t = setup(async () => {
      throw new OutpostError('forbidden', 'not an entitlement');
    });
    await t.runner.run(job(), t.clock.monotonicMs());
    await t.reporter.flush();
    expect(t.proxy.reported).toMatchObject([{ outcome: 'failed', error: { code: 'forbidden', message: 'not an entitlement', retryable: false } }]);
    t.stop();
  });
});
