import { describe, expect, it } from '@jest/globals';
import type { Dispatch } from '../../lib/agent/dispatch.js';
import { LeaseKeeper, type HeartbeatApi } from '../../lib/agent/leases.js';
import { ResultReporter, type ResultsApi } from '../../lib/agent/reporter.js';
import { JobRunner } from '../../lib/agent/runner.js';
import { SEQ_STRIDE, type OutputApi } from '../../lib/agent/output-pipe.js';
import type { EncodedBody } from '../../lib/agent/api.js';
import { silentLogger } from '../../lib/log/index.js';
import type { HeartbeatResponse, LeasedJob, LeaseRef, OutputRequest, ResultItem, ResultsRequest } from '../../lib/protocol/schemas.js';
import { Backoff } from '../../lib/util/backoff.js';
import { OutpostError } from '../../lib/util/errors.js';
import { FakeClock } from '../fixtures/fake-clock.js';
import { sleepUntil } from '../fixtures/net.js';

/**
 * The output pipeline of the runner (lib/agent/output-pipe.ts) against a
 * scripted proxy whose answers the test releases: how many pages are out at
 * once, what the connector may do meanwhile, the seqs of split pages, the
 * fallback to the JSON form, and the fence.
 */
function job(id = 'j1'): LeasedJob {
  return { id, type: 'listAccounts', resource: 'r1', payload: {}, attempt: 1, leaseToken: `tok-${id}-0123456789abcdef`, leaseTtlMs: 30_000, timeoutMs: 300_000 };
}

interface Sent {
  seq: number;
  form: 'ndjson' | 'json';
  records: unknown[];
  bytes: number;
  answer(err?: Error): void;
}

/** A proxy that holds every output call until the test answers it (or answers at once with `auto`). */
class HeldProxy implements HeartbeatApi, ResultsApi, OutputApi {
  sent: Sent[] = [];
  open = 0;
  peakOpen = 0;
  auto = false;
  /** Refuses an NDJSON page as a proxy without the NDJSON parser does. */
  oldProxy = false;
  /** A page over this many body bytes is 413. */
  maxBodyBytes = Infinity;
  reported: ResultItem[] = [];
  reportedWhileOpen = 0;
  /** The memory behind each NDJSON body, and bodies whose bytes changed before they were answered. */
  bodyBuffers = new Set<ArrayBufferLike>();
  changedBeforeAnswer = 0;
  async heartbeat(body: { leases: LeaseRef[] }): Promise<HeartbeatResponse> {
    return { leases: body.leases.map((r) => ({ jobId: r.jobId, status: 'ok' as const, leaseTtlMs: 30_000 })) };
  }
  async results(body: ResultsRequest) {
    if (this.open) this.reportedWhileOpen++;
    this.reported.push(...body.results);
    return { results: body.results.map((r) => ({ jobId: r.jobId, status: 'accepted' as const })) };
  }
  output(_jobId: string, body: OutputRequest) {
    return this.hold({ seq: body.seq, form: 'json', records: body.records, bytes: JSON.stringify(body.records).length });
  }
  async outputNdjson(_jobId: string, page: EncodedBody) {
    if (this.oldProxy) throw new OutpostError('invalid_request', 'the integration-proxy answered 400 on /agent/jobs/j1/output: content-type must be application/json');
    const text = page.data.toString();
    const [head, ...lines] = text.split('\n').filter(Boolean);
    const seq = (JSON.parse(head!) as { seq: number }).seq;
    const data = page.data as Buffer;
    this.bodyBuffers.add(data.buffer);
    // As a socket still writing it would: the body's bytes must not change until the call is answered.
    const intact = () => data.toString() === text || this.changedBeforeAnswer++ < 0;
    return this.hold({ seq, form: 'ndjson', records: lines.map((l) => JSON.parse(l) as unknown), bytes: text.length }, intact);
  }
  private hold(s: Omit<Sent, 'answer'>, intact = () => true) {
    if (s.bytes > this.maxBodyBytes) return Promise.reject(new OutpostError('too_large', 'request body is too large'));
    this.open++;
    this.peakOpen = Math.max(this.peakOpen, this.open);
    return new Promise<{ status: 'accepted' }>((resolve, reject) => {
      const answer = (err?: Error) => {
        intact();
        this.open--;
        if (err) reject(err);
        else resolve({ status: 'accepted' });
      };
      this.sent.push({ ...s, answer });
      if (this.auto) answer();
    });
  }
  /** Answers the oldest unanswered call. */
  answerNext(err?: Error): void {
    const next = this.sent.find((s) => !(s as { done?: boolean }).done);
    if (!next) throw new Error('no call to answer');
    (next as { done?: boolean }).done = true;
    next.answer(err);
  }
  /** Records in seq order, as the proxy reads them back. */
  stored(): unknown[] {
    return [...this.sent].sort((a, b) => a.seq - b.seq).flatMap((s) => s.records);
  }
}

function setup(dispatch: Dispatch, opts: { maxPageBytes?: number } = {}) {
  const clock = new FakeClock();
  const proxy = new HeldProxy();
  const log = silentLogger();
  const keeper = new LeaseKeeper({ api: proxy, clock, log }, { agentId: 'a1', random: () => 0.5 });
  const reporter = new ResultReporter({ api: proxy, clock, log }, { agentId: 'a1', backoff: new Backoff({}, () => 0.5) });
  const runner = new JobRunner({ api: proxy, clock, log, keeper, reporter, dispatch }, { maxPagesInFlight: 3, ...opts });
  return { clock, proxy, keeper, reporter, runner, stop: () => (keeper.stop(), reporter.stop()) };
}

/** A listing of `pages` pages of `size` records, counting the pages the connector has handed over. */
function listing(pages: number, size: number, handed: { n: number }): Dispatch {
  return async (_job, ctx) => {
    for (let p = 0; p < pages; p++) {
      await ctx.writePage(Array.from({ length: size }, (_, i) => ({ id: `u${p * size + i}`, pad: 'x'.repeat(100) })));
      handed.n++;
    }
    return { records: pages * size };
  };
}

describe('output pipeline', () => {
  it('keeps at most 3 pages out while the connector reads on, and reports only once all are stored', async () => {
    const handed = { n: 0 };
    const t = setup(listing(40, 50, handed));
    const run = t.runner.run(job(), t.clock.monotonicMs());
    // Three pages go out unanswered; the connector has handed over the third and now waits on the fourth.
    await sleepUntil(() => t.proxy.sent.length === 3 && handed.n === 3, { what: 'three pages out' });
    expect(t.proxy.open).toBe(3);
    t.proxy.answerNext();
    await sleepUntil(() => t.proxy.sent.length === 4, { what: 'a fourth page once one was stored' });
    t.proxy.auto = true;
    while (t.proxy.open) t.proxy.answerNext();
    await run;
    await t.reporter.flush();
    expect(t.proxy.peakOpen).toBe(3);
    expect(t.proxy.sent.every((s) => s.form === 'ndjson')).toBe(true);
    expect(t.proxy.sent.map((s) => s.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i * SEQ_STRIDE));
    expect(t.proxy.stored().map((r) => (r as { id: string }).id)).toEqual(Array.from({ length: 2000 }, (_, i) => `u${i}`));
    expect(t.proxy.reported).toMatchObject([{ outcome: 'succeeded', result: { records: 2000 } }]);
    expect(t.proxy.reportedWhileOpen).toBe(0);
    t.stop();
  });

  it('writes every page into one of a few reused buffers, whose bytes stay as sent until the page is answered', async () => {
    const handed = { n: 0 };
    const t = setup(listing(30, 40, handed));
    const run = t.runner.run(job(), t.clock.monotonicMs());
    // Answered out of the order sent, a few at a time: a buffer goes back only when its own page is answered.
    for (let answered = 0; answered < 30; ) {
      await sleepUntil(() => t.proxy.open === 3 || t.proxy.sent.length === 30, { what: 'the pipe full' });
      const open = t.proxy.sent.filter((s) => !(s as { done?: boolean }).done);
      const pick = open[open.length - 1]!;
      (pick as { done?: boolean }).done = true;
      pick.answer();
      answered++;
      if (answered >= 27) {
        t.proxy.auto = true;
        while (t.proxy.open) t.proxy.answerNext();
        break;
      }
    }
    await run;
    await t.reporter.flush();
    expect(t.proxy.changedBeforeAnswer).toBe(0);
    expect(t.proxy.stored().map((r) => (r as { id: string }).id)).toEqual(Array.from({ length: 1200 }, (_, i) => `u${i}`));
    // 3 out + 1 being filled.
    expect(t.proxy.bodyBuffers.size).toBeLessThanOrEqual(4);
    expect(t.proxy.reported).toMatchObject([{ outcome: 'succeeded', result: { records: 1200 } }]);
    t.stop();
  });

  it('bounds the bytes out by the page size, not by the listing: one 2 000-record write becomes small pages', async () => {
    const t = setup(listing(1, 2000, { n: 0 }), { maxPageBytes: 16 * 1024 });
    t.proxy.auto = true;
    await t.runner.run(job(), t.clock.monotonicMs());
    // ~125 characters a record: 16 KiB pages hold ~131 records; the whole listing is ~250 KB.
    const sizes = t.proxy.sent.map((s) => s.bytes);
    expect(sizes.length).toBeGreaterThan(10);
    expect(Math.max(...sizes)).toBeLessThan(16 * 1024 + 200);
    expect(t.proxy.peakOpen).toBeLessThanOrEqual(3);
    expect(t.proxy.stored()).toHaveLength(2000);
    t.stop();
  });

  it('splits a page the proxy finds too large into halves that keep their place in seq order', async () => {
    const t = setup(listing(3, 40, { n: 0 }));
    t.proxy.auto = true;
    // A page of 40 records is ~5 KB: the proxy takes 1.5 KB at most, so each is split three times.
    t.proxy.maxBodyBytes = 1500;
    await t.runner.run(job(), t.clock.monotonicMs());
    await t.reporter.flush();
    expect(t.proxy.reported).toMatchObject([{ outcome: 'succeeded' }]);
    expect(t.proxy.stored().map((r) => (r as { id: string }).id)).toEqual(Array.from({ length: 120 }, (_, i) => `u${i}`));
    const seqs = t.proxy.sent.map((s) => s.seq);
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(Math.max(...seqs)).toBeLessThan(3 * SEQ_STRIDE);
    t.stop();
  });

  it('falls back to JSON pages for a proxy that refuses NDJSON, for this job and the next', async () => {
    const t = setup(listing(2, 5, { n: 0 }));
    t.proxy.auto = true;
    t.proxy.oldProxy = true;
    await t.runner.run(job('j1'), t.clock.monotonicMs());
    await t.runner.run(job('j2'), t.clock.monotonicMs());
    await t.reporter.flush();
    expect(t.proxy.sent.map((s) => s.form)).toEqual(['json', 'json', 'json', 'json']);
    expect(t.proxy.reported.map((r) => r.outcome)).toEqual(['succeeded', 'succeeded']);
    expect(t.proxy.stored()).toHaveLength(20);
    t.stop();
  });

  it('a lost lease on one page stops the listing: no page after it, no result', async () => {
    const handed = { n: 0 };
    const t = setup(listing(40, 10, handed));
    const run = t.runner.run(job(), t.clock.monotonicMs());
    await sleepUntil(() => t.proxy.sent.length === 3, { what: 'three pages out' });
    t.proxy.answerNext(new OutpostError('lease_lost', 'the lease of this job is gone'));
    t.proxy.auto = true;
    while (t.proxy.open) t.proxy.answerNext();
    await run;
    await t.reporter.flush();
    expect(t.proxy.sent).toHaveLength(3);
    expect(handed.n).toBe(3);
    expect(t.proxy.reported).toEqual([]);
    expect(t.keeper.size).toBe(0);
    t.stop();
  });

  it('a refused page fails the job with the proxy’s code once the pages out have settled', async () => {
    const t = setup(async (_job, ctx) => {
      await ctx.writePage([{ big: 'y'.repeat(5000) }]);
      await ctx.writePage([{ id: 'after' }]);
      return { records: 2 };
    });
    t.proxy.auto = true;
    t.proxy.maxBodyBytes = 1000;
    await t.runner.run(job(), t.clock.monotonicMs());
    await t.reporter.flush();
    expect(t.proxy.reported).toMatchObject([{ outcome: 'failed', error: { code: 'too_large' } }]);
    t.stop();
  });
});
