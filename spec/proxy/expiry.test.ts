import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { join } from 'node:path';
import { FakeClock } from '../fixtures/fake-clock.js';
import { createTestDatabase, startTestProxy, tempDir, type TestProxy } from '../fixtures/proxy-server.js';
import { waitFor } from '../fixtures/net.js';
import { sample } from '../fixtures/metrics.js';
import { closeDb, openDb, run, type Db } from '../../lib/proxy/store/db.js';
import { LeaseStore } from '../../lib/proxy/store/leases.js';
import type { StoreEvents } from '../../lib/proxy/store/events.js';
import { LeaseExpiry } from '../../lib/proxy/expiry.js';

/**
 * Lease expiry driven by the next lease deadline (lib/proxy/expiry.ts): with
 * the backstop reaper an hour away, a lease expires at its TTL + the timer's
 * slack, a renewal moves the deadline, an expiry wakes a parked poll, and two
 * PostgreSQL replicas never expire one lease twice.
 */
const TTL = 3000;
const BACKSTOP = 3_600_000;

describe('lease expiry at the deadline (SQLite, FakeClock)', () => {
  const tmp = tempDir();
  const clock = new FakeClock();
  let t: TestProxy;

  beforeAll(async () => {
    t = await startTestProxy({ store: 'sqlite:' + join(tmp.dir, 'proxy.db'), overrides: { leaseTtlMs: TTL, reaperIntervalMs: BACKSTOP }, clock });
  });
  afterAll(async () => {
    await t.stop();
    tmp.cleanup();
  });

  const status = async (id: string) => (await t.admin.get(`/v1/jobs/${id}`)).body;
  const hb = (id: string, leaseToken: string) => t.agent.post('/v1/agent/heartbeat', { agentId: 'a1', leases: [{ jobId: id, leaseToken }] });

  it('expires a lease within a few ms of its TTL, long before the backstop', async () => {
    const id = await t.admin.enqueue({ type: 'ping', maxAttempts: 2 });
    await t.agent.lease({ agentId: 'a1' });
    const leasedAt = clock.now();
    await clock.advance(TTL - 1);
    expect(await status(id)).toMatchObject({ status: 'leased' });
    await clock.advance(5);
    await waitFor(async () => (await status(id)).status === 'queued');
    const view = await status(id);
    expect(view.attempts[0]).toMatchObject({ attempt: 1, agentId: 'a1', outcome: 'expired' });
    const expiredAfterMs = Date.parse(view.attempts[0].endedAt) - leasedAt;
    expect(expiredAfterMs).toBeGreaterThanOrEqual(TTL);
    expect(expiredAfterMs).toBeLessThanOrEqual(TTL + 5);
    // Leased again with attempt 2, its last: that expiry ends it (so the next test starts from an empty queue).
    expect(await t.agent.lease({ agentId: 'a2' })).toEqual([expect.objectContaining({ id, attempt: 2 })]);
    await clock.advance(TTL + 5);
    await waitFor(async () => (await status(id)).status === 'failed');
  });

  it('a renewal moves the deadline: the early timer finds nothing and re-arms at the new one', async () => {
    const id = await t.admin.enqueue({ type: 'ping', maxAttempts: 1 });
    const [l] = await t.agent.lease({ agentId: 'a1' });
    expect(l.id).toBe(id);
    await clock.advance(TTL / 2);
    expect((await hb(id, l.leaseToken)).body.leases[0].status).toBe('ok');
    // Past the first deadline: the timer fired, expired nothing, read the renewed one.
    await clock.advance(TTL / 2 + 5);
    expect(await status(id)).toMatchObject({ status: 'leased', attempt: 1 });
    await clock.advance(TTL / 2);
    await waitFor(async () => (await status(id)).status === 'failed');
  });

  it('an expiry wakes a parked poll at once', async () => {
    const id = await t.admin.enqueue({ type: 'ping', maxAttempts: 5 });
    expect(await t.agent.lease({ agentId: 'a0' })).toEqual([expect.objectContaining({ id, attempt: 1 })]);
    const parked = t.agent.lease({ agentId: 'a2', waitMs: 60_000 });
    const scrape = async () => (await t.admin.get('/metrics')).text;
    await waitFor(async () => sample(await scrape(), 'outpost_proxy_parked_polls') === 1);
    await clock.advance(TTL + 5);
    const woken = await parked;
    expect(woken).toEqual([expect.objectContaining({ id, attempt: 2 })]);
  });
});

describe('two replicas on one PostgreSQL database', () => {
  let pgdb: Awaited<ReturnType<typeof createTestDatabase>>;
  const clock = new FakeClock();
  let a: TestProxy;
  let b: TestProxy;
  const dbs: Db[] = [];

  beforeAll(async () => {
    pgdb = await createTestDatabase();
    a = await startTestProxy({ store: pgdb.url, overrides: { leaseTtlMs: TTL, reaperIntervalMs: BACKSTOP }, clock });
    b = await startTestProxy({ store: pgdb.url, overrides: { leaseTtlMs: TTL, reaperIntervalMs: BACKSTOP }, clock });
  }, 30_000);
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    for (const d of dbs) await closeDb(d);
    await pgdb?.drop();
  });

  const noEvents: StoreEvents = { available: () => {}, availableAt: () => {}, changed: () => {} };
  async function leaseStore(): Promise<LeaseStore> {
    const d: Db = await openDb(pgdb.url);
    dbs.push(d);
    return new LeaseStore({ leaseTtlMs: TTL }, { db: d, clock, events: noEvents, replicaId: `r${dbs.length}` });
  }

  it('each replica expires the leases it granted at their TTL, once, and the other can lease them again', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push(await a.admin.enqueue({ type: 'ping', maxAttempts: 5 }));
    const fromA = await a.agent.lease({ agentId: 'a1', max: 10 });
    const fromB = await b.agent.lease({ agentId: 'b1', max: 10 });
    expect(fromA.length + fromB.length).toBe(20);
    // One clock: both replicas' timers fire in the same advance and race on the same statement shape.
    await clock.advance(TTL + 5);
    await waitFor(async () => (await a.admin.get(`/v1/jobs?pool=${a.pool}&status=queued`)).body.jobs?.length === 20);
    for (const id of ids) {
      const view = (await a.admin.get(`/v1/jobs/${id}`)).body;
      expect(view.attempts.filter((x: { outcome: string }) => x.outcome === 'expired')).toHaveLength(1);
    }
    const again = [...(await b.agent.lease({ agentId: 'b2', max: 20 }))];
    expect(again.map((j) => j.attempt)).toEqual(Array(20).fill(2));
    await clock.advance(TTL + 5);
    await waitFor(async () => (await a.admin.get(`/v1/jobs?pool=${a.pool}&status=queued`)).body.jobs?.length === 20);
  });

  it('two stores reaping the same expired leases at once expire each exactly once (fenced statement)', async () => {
    const s1 = await leaseStore();
    const s2 = await leaseStore();
    const batch = Array.from({ length: 50 }, () => ({ pool: a.pool, type: 'ping', maxAttempts: 10 }));
    expect((await a.admin.post('/v1/jobs/batch', { jobs: batch })).status).toBe(201);
    for (let round = 0; round < 5; round++) {
      const leased = await s1.claim(a.pool, 'racer', [], 1000);
      expect(leased.length).toBeGreaterThanOrEqual(50);
      await clock.advance(TTL + 1);
      const seen: string[] = [];
      const counts = await Promise.all([s1.reap((e) => seen.push(...e.map((x) => x.jobId))), s2.reap((e) => seen.push(...e.map((x) => x.jobId)))]);
      expect(counts[0] + counts[1]).toBe(leased.length);
      expect(seen.sort()).toEqual(leased.map((j) => j.id).sort());
    }
    const rows = await run(dbs[0]!, `SELECT job_id, attempt, count(*) AS n FROM outpost_job_attempts WHERE outcome = 'expired' GROUP BY job_id, attempt HAVING count(*) > 1`);
    expect(rows).toEqual([]);
  }, 30_000);
});

describe('LeaseExpiry (the timer alone, FakeClock)', () => {
  function harness(next: Array<number | null>, fail = false) {
    const clock = new FakeClock();
    const calls = { reap: 0, next: 0, errors: 0 };
    let release: (() => void) | undefined;
    const log = { error: () => calls.errors++ } as unknown as import('../../lib/log/index.js').Logger;
    const expiry = new LeaseExpiry(
      { backstopMs: 5000 },
      {
        clock, log,
        reap: async () => {
          calls.reap++;
          if (fail) throw new Error('store down');
          if (release === undefined && calls.reap === 2) await new Promise<void>((r) => (release = r));
          return 0;
        },
        nextExpiryAt: async () => {
          calls.next++;
          const v = next.shift();
          return v === undefined ? null : v === null ? null : clock.now() + v;
        },
      },
    );
    return { clock, calls, expiry, release: () => release?.() };
  }

  it('arms at the earliest deadline only, re-reads the next one after each pass, and never overlaps passes', async () => {
    const h = harness([null]);
    h.expiry.start();
    await h.clock.advance(0);
    expect(h.calls).toMatchObject({ reap: 1, next: 1 });
    const t = h.clock.now();
    h.expiry.deadline(t + 3000);
    h.expiry.deadline(t + 4000); // later: ignored
    expect(h.expiry.armedAt).toBe(t + 3000);
    h.expiry.deadline(t + 2000); // earlier: re-armed
    expect(h.expiry.armedAt).toBe(t + 2000);
    await h.clock.advance(2001);
    // The second pass blocks in reap; the backstop's trigger meanwhile runs one more pass after it, not beside it.
    expect(h.calls.reap).toBe(2);
    await h.clock.advance(3000);
    expect(h.calls.reap).toBe(2);
    h.release();
    await h.clock.advance(0);
    expect(h.calls.reap).toBe(3);
    await h.expiry.stop();
    await h.expiry.stop();
    await h.clock.advance(60_000);
    expect(h.calls.reap).toBe(3);
  });

  it('a failing store is retried by the backstop, not in a loop', async () => {
    const h = harness([], true);
    h.expiry.start();
    await h.clock.advance(0);
    expect(h.calls).toMatchObject({ reap: 1, errors: 1 });
    await h.clock.advance(4999);
    expect(h.calls.reap).toBe(1);
    await h.clock.advance(1);
    expect(h.calls).toMatchObject({ reap: 2, errors: 2 });
    await h.expiry.stop();
  });
});
