import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { openStoreKit, KIT_PRESENCE_MS, type StoreKit } from '../fixtures/proxy-store.js';
import { run } from '../../lib/proxy/store/db.js';
import { RetentionStore } from '../../lib/proxy/store/retention.js';
import { AgentStore } from '../../lib/proxy/store/agents.js';
import { OutputStore } from '../../lib/proxy/store/output.js';
import { StatsStore } from '../../lib/proxy/store/stats.js';
import { Sweeper } from '../../lib/proxy/sweeper.js';
import { silentLogger } from '../../lib/log/index.js';
import { sleepUntil } from '../fixtures/net.js';

const DAY_MS = 86_400_000;

/** Retention, expiry and paging of the store on both dialects, on a FakeClock. */
describe.each(['sqlite', 'postgres'] as const)('retention and paging on %s', (kind) => {
  let k: StoreKit;
  let retention: RetentionStore;
  let output: OutputStore;
  let n = 0;
  const freshPool = () => `pool-${kind}-${++n}`;
  beforeAll(async () => {
    k = await openStoreKit(kind);
    retention = new RetentionStore({ db: k.db, clock: k.clock });
    output = new OutputStore({ db: k.db }, { maxBytesPerJob: 1 << 30, maxBytesPerPool: 1 << 30 });
  });
  afterAll(async () => {
    await k?.close();
  });

  async function usage(pool: string): Promise<number> {
    const [row] = await run<{ output_bytes: number | string }>(k.db, 'SELECT output_bytes FROM outpost_pool_usage WHERE pool = ?', [pool]);
    return Number(row?.output_bytes ?? 0);
  }

  it('deletes finished jobs and their output after the window, keeps newer and open ones, frees the pool’s output bytes', async () => {
    const pool = freshPool();
    const [old, open, recent] = await k.jobs.enqueue([
      { pool, type: 'listAccounts', resource: 'ad' },
      { pool, type: 'ping' },
      { pool, type: 'ping' },
    ]);
    const [lease] = await k.leases.claim(pool, 'a1', ['ad'], 1);
    expect(lease!.id).toBe(old!.id);
    expect(await output.append(pool, old!.id, lease!.leaseToken, 0, [{ id: 'x' }, { id: 'y' }])).toBe('accepted');
    // A page is stored and counted as NDJSON: one line a record.
    const bytes = Buffer.byteLength('{"id":"x"}\n{"id":"y"}\n');
    expect(await usage(pool)).toBe(bytes);
    await k.leases.results(pool, [{ jobId: old!.id, leaseToken: lease!.leaseToken, outcome: 'succeeded', result: { records: 2 } }]);
    await k.clock.advance(6 * DAY_MS);
    const [l2] = await k.leases.claim(pool, 'a1', [], 1);
    await k.leases.results(pool, [{ jobId: l2!.id, leaseToken: l2!.leaseToken, outcome: 'failed', error: { code: 'x', message: 'm', retryable: false } }]);
    expect(l2!.id).toBe(open!.id);
    await k.clock.advance(DAY_MS + 1);
    // The first job finished 7 days + 1 ms ago; the second 1 day ago; the third is still queued.
    expect(await retention.deleteFinished(await k.jobs.pools(), 7 * DAY_MS, 1000)).toBe(1);
    expect(await k.jobs.get(old!.id)).toBeUndefined();
    expect(await k.jobs.get(open!.id)).toMatchObject({ status: 'failed' });
    expect(await k.jobs.get(recent!.id)).toMatchObject({ status: 'queued' });
    const pages = await run(k.db, 'SELECT * FROM outpost_output WHERE job_id = ?', [old!.id]);
    expect(pages).toEqual([]);
    expect(await usage(pool)).toBe(0);
    expect(await retention.deleteFinished(await k.jobs.pools(), 7 * DAY_MS, 1000)).toBe(0);
  });

  it('deletes in batches of the given size, oldest first', async () => {
    // Earlier tests' finished jobs go first, so the counts below are this test's alone.
    await retention.deleteFinished(await k.jobs.pools(), 0, 1_000_000);
    const pool = freshPool();
    const made = await k.jobs.enqueue(Array.from({ length: 5 }, () => ({ pool, type: 'ping' })));
    for (const m of made) {
      await k.jobs.cancel(m.id);
      await k.clock.advance(1000);
    }
    await k.clock.advance(DAY_MS);
    expect(await retention.deleteFinished(await k.jobs.pools(), DAY_MS + 2500, 2)).toBe(2);
    expect(await k.jobs.get(made[0]!.id)).toBeUndefined();
    expect(await k.jobs.get(made[1]!.id)).toBeUndefined();
    expect(await retention.deleteFinished(await k.jobs.pools(), DAY_MS + 2500, 2)).toBe(1);
    expect(await retention.deleteFinished(await k.jobs.pools(), DAY_MS + 2500, 2)).toBe(0);
    expect(await k.jobs.get(made[3]!.id)).toMatchObject({ status: 'cancelled' });
  });

  it('deletes agents offline longer than the window and keeps the others', async () => {
    const pool = freshPool();
    await k.agents.touch(pool, { agentId: 'gone', hostname: 'h', version: '1', resources: [] });
    await k.clock.advance(7 * DAY_MS + 1);
    await k.agents.touch(pool, { agentId: 'here', hostname: 'h', version: '1', resources: [] });
    expect(await k.agents.deleteOffline(7 * DAY_MS, 1000)).toBeGreaterThanOrEqual(1);
    expect((await k.agents.list([pool])).agents.map((a) => a.agentId)).toEqual(['here']);
  });

  it('a queued job past its expiry ends failed/expired; a leased or newer one does not', async () => {
    // Earlier tests' queued jobs (24 h default) expire first.
    await k.jobs.expireQueued(1_000_000);
    const pool = freshPool();
    const [short, leased, long] = await k.jobs.enqueue([
      { pool, type: 'ping', queueTimeoutMs: 1000 },
      { pool, type: 'ping', queueTimeoutMs: 1000 },
      { pool, type: 'ping', expiresAt: new Date(k.clock.now() + 60_000).toISOString() },
    ]);
    const [l1, l2] = await k.leases.claim(pool, 'a1', [], 2);
    expect([l1!.id, l2!.id]).toEqual([short!.id, leased!.id]);
    // Leased and given back: queued again, and its expiry still holds.
    await k.leases.release(pool, [{ jobId: l1!.id, leaseToken: l1!.leaseToken }]);
    await k.clock.advance(999);
    expect(await k.jobs.expireQueued(100)).toEqual([]);
    await k.clock.advance(1);
    expect(await k.jobs.expireQueued(100)).toEqual([short!.id]);
    expect(await k.jobs.get(leased!.id)).toMatchObject({ status: 'leased' });
    const view = await k.jobs.get(short!.id);
    expect(view).toMatchObject({ status: 'failed', error: { code: 'expired', retryable: false } });
    expect(view!.finishedAt).not.toBeNull();
    expect(k.events.changedLog).toContain(short!.id);
    expect(await k.jobs.get(long!.id)).toMatchObject({ status: 'queued', expiresAt: new Date(k.clock.now() + 59_000).toISOString() });
    expect(await k.leases.claim(pool, 'a1', [], 10)).toHaveLength(1);
  });

  it('the sweeper on the injected clock expires, deletes and stops', async () => {
    const pool = freshPool();
    const [job] = await k.jobs.enqueue([{ pool, type: 'ping', queueTimeoutMs: 5000 }]);
    const passes: Array<{ expired: number; jobs: number; agents: number }> = [];
    const sweeper = new Sweeper(
      { finishedJobsMs: 60_000, offlineAgentsMs: 7 * DAY_MS, sweepIntervalMs: 10_000, batchSize: 10 },
      {
        clock: k.clock,
        log: silentLogger(),
        expireQueued: async (b) => (await k.jobs.expireQueued(b)).length,
        deleteFinished: async (ms, b) => retention.deleteFinished(await k.jobs.pools(), ms, b),
        deleteOfflineAgents: (ms, b) => k.agents.deleteOffline(ms, b),
        swept: (c) => passes.push(c),
      },
    );
    sweeper.start();
    await k.clock.advance(10_000);
    await sleepUntil(() => passes.length >= 1);
    expect(await k.jobs.get(job!.id)).toMatchObject({ status: 'failed', error: { code: 'expired' } });
    expect(passes[0]!.expired).toBeGreaterThanOrEqual(1);
    // 60 s after it ended, the expired job is past retention: a later pass deletes it.
    await sleepUntil(async () => {
      await k.clock.advance(10_000);
      return (await k.jobs.get(job!.id)) === undefined;
    });
    expect(passes.reduce((n, p) => n + p.jobs, 0)).toBeGreaterThanOrEqual(1);
    await sweeper.stop();
    await sweeper.stop();
    const count = passes.length;
    await k.clock.advance(100_000);
    expect(passes.length).toBe(count);
  });

  it('GET /v1/jobs paging walks every job once, newest first, with equal creation times', async () => {
    const pool = freshPool();
    // Same clock time for all (FakeClock does not move): the id breaks ties.
    const made = await k.jobs.enqueue(Array.from({ length: 23 }, () => ({ pool, type: 'ping' })));
    await k.clock.advance(1);
    const more = await k.jobs.enqueue(Array.from({ length: 4 }, () => ({ pool, type: 'ping' })));
    await k.jobs.cancel(made[3]!.id);
    for (const status of [undefined, 'queued'] as const) {
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await k.jobs.list([pool], status, 5, cursor);
        seen.push(...page.jobs.map((j) => j.id));
        cursor = page.nextCursor ?? undefined;
        pages++;
      } while (cursor);
      const all = [...made, ...more].map((m) => m.id).filter((id) => status === undefined || id !== made[3]!.id);
      expect(new Set(seen).size).toBe(seen.length);
      expect(seen.sort()).toEqual(all.sort());
      expect(pages).toBe(Math.ceil(all.length / 5));
    }
    // All pools (the configured admin token): one page per pool, merged, still each job once.
    const everything: string[] = [];
    let c: string | undefined;
    do {
      const page = await k.jobs.list(null, undefined, 7, c);
      everything.push(...page.jobs.map((j) => j.id));
      c = page.nextCursor ?? undefined;
    } while (c);
    const [count] = await run<{ n: number | string }>(k.db, 'SELECT COUNT(*) AS n FROM outpost_jobs');
    expect(everything).toHaveLength(Number(count!.n));
    expect(new Set(everything).size).toBe(everything.length);
    const queuedAll = await k.jobs.list(null, 'queued', 1000);
    expect(queuedAll.jobs.every((j) => j.status === 'queued')).toBe(true);
    expect(queuedAll.jobs.filter((j) => j.pool === pool)).toHaveLength(26);
    const first = await k.jobs.list([pool], undefined, 4);
    expect(first.jobs.map((j) => j.id).sort()).toEqual(more.map((m) => m.id).sort());
    await expect(k.jobs.list([pool], undefined, 5, 'not-a-cursor!')).rejects.toThrow('querystring.cursor');
    await expect(k.jobs.list([pool], undefined, 5, Buffer.from('["x",1]').toString('base64url'))).rejects.toThrow('querystring.cursor');
  });

  it('GET /v1/agents paging walks every agent once, across pools', async () => {
    const pools = [freshPool(), freshPool()];
    for (const p of pools) for (let i = 0; i < 7; i++) await k.agents.touch(p, { agentId: `a${i}`, hostname: 'h', version: '1', resources: ['r'] });
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await k.agents.list(pools, 3, cursor);
      seen.push(...page.agents.map((a) => `${a.pool}/${a.agentId}`));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(seen).toHaveLength(14);
    expect(new Set(seen).size).toBe(14);
  });

  it('agents: a new agent beyond the quota takes the place of the longest-offline one, or is refused', async () => {
    const refused: string[] = [];
    const agents = new AgentStore({ presenceMs: KIT_PRESENCE_MS, maxAgentsPerPool: 2, maxInfoBytes: 100 }, { db: k.db, clock: k.clock, onQuota: (q) => refused.push(q) });
    const pool = freshPool();
    await agents.touch(pool, { agentId: 'a1', hostname: 'h', version: '1', resources: ['ad'] });
    await k.clock.advance(1000);
    await agents.touch(pool, { agentId: 'a2', hostname: 'h', version: '1', resources: [] });
    await expect(agents.touch(pool, { agentId: 'a3', hostname: 'h', version: '1', resources: [] })).rejects.toMatchObject({ code: 'rate_limited' });
    // A known agent still reports in.
    await k.clock.advance(1);
    await agents.touch(pool, { agentId: 'a1', hostname: 'h2', version: '1', resources: ['ad'] });
    await expect(agents.touch(pool, { agentId: 'a4', hostname: 'h'.repeat(101), version: '1', resources: [] })).rejects.toMatchObject({ code: 'too_large' });
    expect((await agents.list([pool])).agents.map((a) => a.agentId)).toEqual(['a1', 'a2']);
    expect(await agents.serves(pool, 'ad')).toBe(true);
    expect(await agents.serves(pool, 'a')).toBe(false);
    await k.clock.advance(KIT_PRESENCE_MS + 1);
    // Both offline now; a2 was seen longest ago, so it makes room.
    await agents.touch(pool, { agentId: 'a3', hostname: 'h', version: '1', resources: [] });
    expect((await agents.list([pool])).agents.map((a) => a.agentId)).toEqual(['a1', 'a3']);
    expect(refused).toEqual(['agents_per_pool', 'agent_info_bytes']);
    // Presence seen from another replica (a fresh store object): answered by the store.
    const other = new AgentStore({ presenceMs: KIT_PRESENCE_MS }, { db: k.db, clock: k.clock });
    expect(await other.serves(pool, 'ad')).toBe(false); // a1 is offline now
    await agents.touch(pool, { agentId: 'a1', hostname: 'h3', version: '1', resources: ['ad'] });
    expect(await other.serves(pool, 'ad')).toBe(true);
  });

  it('queue depth and online counts read only open jobs and recent agents', async () => {
    const stats = new StatsStore({ db: k.db });
    const pool = freshPool();
    await k.jobs.enqueue([{ pool, type: 'ping' }, { pool, type: 'ping' }, { pool, type: 'ping' }]);
    await k.leases.claim(pool, 'a1', [], 1);
    const depth = (await stats.queueDepth()).filter((r) => r.pool === pool);
    expect(depth.sort((a, b) => a.status.localeCompare(b.status))).toEqual([
      { pool, status: 'leased', n: 1 },
      { pool, status: 'queued', n: 2 },
    ]);
    await k.agents.touch(pool, { agentId: 'x', hostname: 'h', version: '1', resources: [] });
    expect((await k.agents.onlineCounts()).find((r) => r.pool === pool)).toEqual({ pool, n: 1 });
  });
});
