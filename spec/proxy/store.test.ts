import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { openStoreKit, KIT_LEASE_TTL_MS, KIT_PRESENCE_MS, type StoreKit } from '../fixtures/proxy-store.js';
import { run } from '../../lib/proxy/store/db.js';
import { hashToken } from '../../lib/proxy/store/tokens.js';

/** The job store against both dialects: the same behaviour on SQLite and on real PostgreSQL. */
describe.each(['sqlite', 'postgres'] as const)('job store on %s', (kind) => {
  let k: StoreKit;
  let n = 0;
  /** A pool of its own per test, so tests do not see each other's jobs. */
  const freshPool = () => `pool-${kind}-${++n}`;
  beforeAll(async () => {
    // random() = 1 makes the retry delay its ceiling: 2 s · 2^(attempt−1).
    k = await openStoreKit(kind, () => 0.999999);
  });
  afterAll(async () => {
    await k?.close();
  });

  it('claims FIFO in one statement, honours max and resources, attempt 1 and a fresh 128-bit token each', async () => {
    const pool = freshPool();
    const made = await k.jobs.enqueue([
      { pool, type: 'ping' },
      { pool, type: 'listAccounts', resource: 'ad' },
      { pool, type: 'listAccounts', resource: 'hr-db' },
      { pool, type: 'ping' },
    ]);
    expect(k.events.availableLog.at(-1)).toEqual({ pool, resources: [null, 'ad', 'hr-db', null] });
    const first = await k.leases.claim(pool, 'a1', ['ad'], 2);
    expect(first.map((j) => j.id)).toEqual([made[0]!.id, made[1]!.id]);
    expect(first.every((j) => j.attempt === 1 && j.leaseTtlMs === KIT_LEASE_TTL_MS && j.timeoutMs === 300_000)).toBe(true);
    expect(first[0]!.leaseToken).not.toEqual(first[1]!.leaseToken);
    expect(first[0]!.leaseToken).toMatch(/^[0-9a-f]{32}/);
    // The hr-db job is not offered to an agent without hr-db; the resource-less ping is.
    const second = await k.leases.claim(pool, 'a1', ['ad'], 10);
    expect(second.map((j) => j.id)).toEqual([made[3]!.id]);
    expect(await k.leases.claim(pool, 'a2', [], 10)).toEqual([]);
    const third = await k.leases.claim(pool, 'a2', ['hr-db'], 10);
    expect(third.map((j) => j.id)).toEqual([made[2]!.id]);
    expect(await k.leases.claim('other-pool', 'a1', ['ad', 'hr-db'], 10)).toEqual([]);
  });

  it('heartbeat renews, fences stale tokens and tells a cancelled job', async () => {
    const pool = freshPool();
    const [a, b] = await k.jobs.enqueue([{ pool, type: 'ping' }, { pool, type: 'ping' }]);
    const leased = await k.leases.claim(pool, 'a1', [], 2);
    const refs = leased.map((j) => ({ jobId: j.id, leaseToken: j.leaseToken }));
    await k.jobs.cancel(b!.id);
    const hb = await k.leases.heartbeat(pool, 'a1', [...refs, { jobId: a!.id, leaseToken: 'f'.repeat(32) + a!.id }]);
    // Each answer is for its (jobId, leaseToken): the stale token beside the live one for job a is lost.
    expect(hb).toEqual([
      { jobId: a!.id, status: 'ok', leaseTtlMs: KIT_LEASE_TTL_MS },
      { jobId: b!.id, status: 'cancelled' },
      { jobId: a!.id, status: 'lost' },
    ]);
    // Another pool's agent cannot renew (or learn about) this lease.
    expect(await k.leases.heartbeat('intruder', 'x', [refs[0]!])).toEqual([{ jobId: a!.id, status: 'lost' }]);
  });

  it('answers each (jobId, leaseToken) for itself: a stale token beside the live one is lost, the live one is served', async () => {
    const pool = freshPool();
    await k.jobs.enqueue([{ pool, type: 'ping' }, { pool, type: 'ping' }, { pool, type: 'ping' }, { pool, type: 'ping' }]);
    const [j1, j2, j3, j4] = await k.leases.claim(pool, 'a1', [], 4);
    const stale = (j: { id: string }) => '0'.repeat(32) + j.id;
    // Heartbeat: stale first, then live (and the other way round), and a cancelled job's stale token.
    await k.jobs.cancel(j3!.id);
    expect(
      await k.leases.heartbeat(pool, 'a1', [
        { jobId: j1!.id, leaseToken: stale(j1!) },
        { jobId: j1!.id, leaseToken: j1!.leaseToken },
        { jobId: j2!.id, leaseToken: j2!.leaseToken },
        { jobId: j2!.id, leaseToken: stale(j2!) },
        { jobId: j3!.id, leaseToken: stale(j3!) },
        { jobId: j3!.id, leaseToken: j3!.leaseToken },
      ]),
    ).toEqual([
      { jobId: j1!.id, status: 'lost' },
      { jobId: j1!.id, status: 'ok', leaseTtlMs: KIT_LEASE_TTL_MS },
      { jobId: j2!.id, status: 'ok', leaseTtlMs: KIT_LEASE_TTL_MS },
      { jobId: j2!.id, status: 'lost' },
      { jobId: j3!.id, status: 'lost' },
      { jobId: j3!.id, status: 'cancelled' },
    ]);
    // Results: a stale success before the live one, a stale failure after it; only the live result is kept.
    expect(
      await k.leases.results(pool, [
        { jobId: j1!.id, leaseToken: stale(j1!), outcome: 'succeeded', result: { evil: true } },
        { jobId: j1!.id, leaseToken: j1!.leaseToken, outcome: 'succeeded', result: { ok: 1 } },
        { jobId: j2!.id, leaseToken: j2!.leaseToken, outcome: 'succeeded', result: { ok: 2 } },
        { jobId: j2!.id, leaseToken: stale(j2!), outcome: 'failed', error: { code: 'x', message: 'stale', retryable: false } },
      ]),
    ).toEqual([
      { jobId: j1!.id, status: 'lost' },
      { jobId: j1!.id, status: 'accepted' },
      { jobId: j2!.id, status: 'accepted' },
      { jobId: j2!.id, status: 'lost' },
    ]);
    expect(await k.jobs.get(j1!.id)).toMatchObject({ status: 'succeeded', result: { ok: 1 }, error: null });
    expect(await k.jobs.get(j2!.id)).toMatchObject({ status: 'succeeded', result: { ok: 2 }, error: null });
    // A repeat of the live result is still accepted; the stale one is still lost.
    expect(
      await k.leases.results(pool, [
        { jobId: j1!.id, leaseToken: j1!.leaseToken, outcome: 'succeeded', result: { ok: 1 } },
        { jobId: j1!.id, leaseToken: stale(j1!), outcome: 'succeeded', result: { evil: true } },
      ]),
    ).toEqual([
      { jobId: j1!.id, status: 'accepted' },
      { jobId: j1!.id, status: 'lost' },
    ]);
    // Release: the stale token releases nothing, the live one releases the job once.
    expect(
      await k.leases.release(pool, [
        { jobId: j4!.id, leaseToken: stale(j4!) },
        { jobId: j4!.id, leaseToken: j4!.leaseToken },
      ]),
    ).toEqual([
      { jobId: j4!.id, status: 'lost' },
      { jobId: j4!.id, status: 'released' },
    ]);
    expect(await k.jobs.get(j4!.id)).toMatchObject({ status: 'queued', attempt: 0 });
    const ended = await run<{ outcome: string }>(k.db, 'SELECT outcome FROM outpost_job_attempts WHERE job_id = ?', [j4!.id]);
    expect(ended).toEqual([{ outcome: 'released' }]);
  });

  it('attempts: a claim and a success write no row; a release, a failure and an expiry end a row written before 0.2 once', async () => {
    const pool = freshPool();
    const made = await k.jobs.enqueue([{ pool, type: 'ping' }, { pool, type: 'ping' }, { pool, type: 'ping' }, { pool, type: 'ping' }]);
    const ids = made.map((j) => j.id);
    const leased = await k.leases.claim(pool, 'a1', [], 4);
    const count = async () => (await run<{ n: number | string }>(k.db, `SELECT count(*) AS n FROM outpost_job_attempts WHERE job_id IN (${ids.map(() => '?').join(',')})`, ids))[0]!.n;
    expect(Number(await count())).toBe(0);
    // Rows as a release before 0.2 wrote them at the claim: running, not ended.
    for (const j of leased) {
      await run(k.db, `INSERT INTO outpost_job_attempts (job_id, lease_token, attempt, agent_id, started_at, outcome) VALUES (?, ?, 1, 'a1', 1, 'running')`, [j.id, j.leaseToken]);
    }
    const [ok, rel, bad, lapsed] = leased;
    await k.leases.results(pool, [
      { jobId: ok!.id, leaseToken: ok!.leaseToken, outcome: 'succeeded', result: null },
      { jobId: bad!.id, leaseToken: bad!.leaseToken, outcome: 'failed', error: { code: 'permission_denied', message: 'no', retryable: false } },
    ]);
    await k.leases.release(pool, [{ jobId: rel!.id, leaseToken: rel!.leaseToken }]);
    await run(k.db, 'UPDATE outpost_jobs SET lease_expires_at = 0 WHERE id = ?', [lapsed!.id]);
    await k.leases.reap();
    // A late duplicate changes nothing.
    await k.leases.release(pool, [{ jobId: rel!.id, leaseToken: rel!.leaseToken }]);
    const rows = await run<{ job_id: string; outcome: string; ended_at: unknown; started_at: unknown }>(
      k.db,
      `SELECT job_id, outcome, ended_at, started_at FROM outpost_job_attempts WHERE job_id IN (${ids.map(() => '?').join(',')})`,
      ids,
    );
    const byJob = Object.fromEntries(rows.map((r) => [r.job_id, r.outcome]));
    expect(byJob).toEqual({ [ok!.id]: 'running', [rel!.id]: 'released', [bad!.id]: 'failed', [lapsed!.id]: 'expired' });
    expect(rows.filter((r) => r.outcome !== 'running').every((r) => r.ended_at !== null && Number(r.started_at) === 1)).toBe(true);
  });

  it('settleAndClaimJson: a poll\'s results and renewals are recorded, then its claim made; on SQLite in one transaction', async () => {
    const pool = freshPool();
    await k.jobs.enqueue([{ pool, type: 'ping' }, { pool, type: 'ping' }, { pool, type: 'ping' }]);
    const [done, held] = await k.leases.claim(pool, 'a1', [], 2);
    const r = await k.leases.settleAndClaimJson(
      pool,
      'a1',
      { results: [{ jobId: done!.id, leaseToken: done!.leaseToken, outcome: 'succeeded', result: { n: 1 } }], leases: [{ jobId: held!.id, leaseToken: held!.leaseToken }] },
      [],
      5,
    );
    expect(r.results).toEqual([{ jobId: done!.id, status: 'accepted' }]);
    expect(r.leases).toEqual([{ jobId: held!.id, status: 'ok', leaseTtlMs: KIT_LEASE_TTL_MS }]);
    const next = JSON.parse(r.claimed.json) as Array<{ id: string; leaseToken: string }>;
    expect(next.map((j) => [j.id, j.leaseToken])).toEqual(r.claimed.refs.map((x) => [x.jobId, x.leaseToken]));
    expect(next).toHaveLength(1);
    expect(await k.jobs.get(done!.id)).toMatchObject({ status: 'succeeded', result: { n: 1 } });
    // max 0 records the cargo and claims nothing.
    const none = await k.leases.settleAndClaimJson(pool, 'a1', { leases: [{ jobId: held!.id, leaseToken: held!.leaseToken }] }, [], 0);
    expect(none).toEqual({ leases: [{ jobId: held!.id, status: 'ok', leaseTtlMs: KIT_LEASE_TTL_MS }], claimed: { refs: [], json: '[]' } });
    if (kind !== 'sqlite') return;
    // One transaction: a claim that fails takes the results back with it (the agent sends them again).
    await expect(
      k.leases.settleAndClaimJson(pool, 'a1', { results: [{ jobId: held!.id, leaseToken: held!.leaseToken, outcome: 'succeeded', result: null }] }, [], 1.5),
    ).rejects.toThrow(/max/);
    expect(await k.jobs.get(held!.id)).toMatchObject({ status: 'leased' });
  });

  it('settleAndClaimJson with successes only (one statement on PostgreSQL): accepted, a repeat accepted, a stale token lost, the next jobs claimed', async () => {
    const pool = freshPool();
    await k.jobs.enqueue([{ pool, type: 'ping' }, { pool, type: 'ping' }, { pool, type: 'ping' }, { pool, type: 'ping' }]);
    const [a, b] = await k.leases.claim(pool, 'a1', [], 2);
    const ok = (j: { id: string; leaseToken: string }, result: unknown) => ({ jobId: j.id, leaseToken: j.leaseToken, outcome: 'succeeded' as const, result });
    await k.leases.results(pool, [ok(a!, { first: true })]);
    const r = await k.leases.settleAndClaimJson(pool, 'a1', { results: [ok(a!, { again: true }), ok(b!, { n: 2 }), ok({ id: b!.id, leaseToken: '0'.repeat(32) + b!.id }, { evil: true })] }, [], 5);
    expect(r.results).toEqual([
      { jobId: a!.id, status: 'accepted' },
      { jobId: b!.id, status: 'accepted' },
      { jobId: b!.id, status: 'lost' },
    ]);
    expect(r.claimed.refs).toHaveLength(2);
    expect((JSON.parse(r.claimed.json) as Array<{ attempt: number; leaseTtlMs: number }>).every((j) => j.attempt === 1 && j.leaseTtlMs === KIT_LEASE_TTL_MS)).toBe(true);
    expect(await k.jobs.get(a!.id)).toMatchObject({ status: 'succeeded', result: { first: true } });
    expect(await k.jobs.get(b!.id)).toMatchObject({ status: 'succeeded', result: { n: 2 } });
    // A job leased again has the pages of its earlier lease discarded, as by claim.
    const [c] = r.claimed.refs;
    expect(await k.output.append(pool, c!.jobId, c!.leaseToken, 0, [{ old: 1 }])).toBe('accepted');
    await k.leases.release(pool, [c!]);
    const again = await k.leases.settleAndClaimJson(pool, 'a2', { results: [ok({ id: r.claimed.refs[1]!.jobId, leaseToken: r.claimed.refs[1]!.leaseToken }, null)] }, [], 5);
    expect(again.results).toEqual([{ jobId: r.claimed.refs[1]!.jobId, status: 'accepted' }]);
    expect(again.claimed.refs.map((x) => x.jobId)).toEqual([c!.jobId]);
    expect(await run(k.db, 'SELECT seq FROM outpost_output WHERE job_id = ? AND lease_token = ?', [c!.jobId, c!.leaseToken])).toEqual([]);
  });

  it('results: batched success, repeats are no-ops, stale tokens are lost and change nothing', async () => {
    const pool = freshPool();
    await k.jobs.enqueue([{ pool, type: 'ping' }, { pool, type: 'ping' }]);
    const [j1, j2] = await k.leases.claim(pool, 'a1', [], 2);
    const stale = { jobId: j2!.id, leaseToken: '0'.repeat(32) + j2!.id, outcome: 'succeeded' as const, result: { evil: true } };
    const items = [
      { jobId: j1!.id, leaseToken: j1!.leaseToken, outcome: 'succeeded' as const, result: { ok: true } },
      stale,
    ];
    expect(await k.leases.results(pool, items)).toEqual([
      { jobId: j1!.id, status: 'accepted' },
      { jobId: j2!.id, status: 'lost' },
    ]);
    expect(await k.leases.results(pool, [items[0]!])).toEqual([{ jobId: j1!.id, status: 'accepted' }]);
    const v1 = await k.jobs.get(j1!.id);
    expect(v1).toMatchObject({ status: 'succeeded', result: { ok: true }, attempt: 1, agentId: 'a1' });
    expect(v1!.finishedAt).not.toBeNull();
    expect(await k.jobs.get(j2!.id)).toMatchObject({ status: 'leased', result: null });
    // A second result with another outcome for a finished job changes nothing.
    const again = await k.leases.results(pool, [{ jobId: j1!.id, leaseToken: j1!.leaseToken, outcome: 'failed', error: { code: 'x', message: 'late', retryable: false } }]);
    expect(again).toEqual([{ jobId: j1!.id, status: 'accepted' }]);
    expect(await k.jobs.get(j1!.id)).toMatchObject({ status: 'succeeded', error: null });
  });

  it('a retryable failure goes back with backoff; exhausted attempts end failed', async () => {
    const pool = freshPool();
    const [job] = await k.jobs.enqueue([{ pool, type: 'ping', maxAttempts: 2 }]);
    const [l1] = await k.leases.claim(pool, 'a1', [], 1);
    const err = { code: 'unreachable', message: 'down', retryable: true };
    const t0 = k.clock.now();
    expect(await k.leases.results(pool, [{ jobId: job!.id, leaseToken: l1!.leaseToken, outcome: 'failed', error: err }])).toEqual([
      { jobId: job!.id, status: 'accepted' },
    ]);
    expect(await k.jobs.get(job!.id)).toMatchObject({ status: 'queued', attempt: 1, error: err });
    expect(k.events.availableAtLog.at(-1)).toMatchObject({ pool, resource: null });
    const due = k.events.availableAtLog.at(-1)!.atMs;
    expect(due - t0).toBeGreaterThan(1900);
    expect(due - t0).toBeLessThanOrEqual(2000);
    expect(await k.leases.claim(pool, 'a1', [], 1)).toEqual([]);
    await k.clock.advance(2000);
    const [l2] = await k.leases.claim(pool, 'a2', [], 1);
    expect(l2).toMatchObject({ id: job!.id, attempt: 2 });
    await k.leases.results(pool, [{ jobId: job!.id, leaseToken: l2!.leaseToken, outcome: 'failed', error: err }]);
    expect(await k.jobs.get(job!.id)).toMatchObject({ status: 'failed', attempt: 2, error: err });
  });

  it('a non-retryable failure ends failed at once', async () => {
    const pool = freshPool();
    const [job] = await k.jobs.enqueue([{ pool, type: 'grant', resource: 'ad' }]);
    const [l] = await k.leases.claim(pool, 'a1', ['ad'], 1);
    const err = { code: 'invalid_request', message: 'bad payload', retryable: false };
    await k.leases.results(pool, [{ jobId: job!.id, leaseToken: l!.leaseToken, outcome: 'failed', error: err }]);
    expect(await k.jobs.get(job!.id)).toMatchObject({ status: 'failed', attempt: 1, error: err });
  });

  it('release spends no attempt; expiry does, and ends failed after maxAttempts', async () => {
    // Leases of earlier tests expire first, so the counts below are this test's alone.
    await k.clock.advance(KIT_LEASE_TTL_MS);
    await k.leases.reap();
    const pool = freshPool();
    const [job] = await k.jobs.enqueue([{ pool, type: 'ping', maxAttempts: 2 }]);
    const [l1] = await k.leases.claim(pool, 'a1', [], 1);
    expect(await k.leases.release(pool, [{ jobId: job!.id, leaseToken: l1!.leaseToken }])).toEqual([{ jobId: job!.id, status: 'released' }]);
    expect(k.events.availableLog.at(-1)).toEqual({ pool, resources: [null] });
    // Released twice, or with a stale token: lost, nothing changes.
    expect(await k.leases.release(pool, [{ jobId: job!.id, leaseToken: l1!.leaseToken }])).toEqual([{ jobId: job!.id, status: 'lost' }]);
    const [l2] = await k.leases.claim(pool, 'a1', [], 1);
    expect(l2!.attempt).toBe(1);
    expect(l2!.leaseToken).not.toEqual(l1!.leaseToken);
    await k.clock.advance(KIT_LEASE_TTL_MS - 1);
    expect(await k.leases.reap()).toBe(0);
    await k.clock.advance(1);
    expect(await k.leases.reap()).toBe(1);
    expect(await k.jobs.get(job!.id)).toMatchObject({ status: 'queued', attempt: 1 });
    expect(await k.leases.heartbeat(pool, 'a1', [{ jobId: job!.id, leaseToken: l2!.leaseToken }])).toEqual([{ jobId: job!.id, status: 'lost' }]);
    const [l3] = await k.leases.claim(pool, 'a2', [], 1);
    expect(l3!.attempt).toBe(2);
    await k.clock.advance(KIT_LEASE_TTL_MS);
    expect(await k.leases.reap()).toBe(1);
    const failed = await k.jobs.get(job!.id);
    expect(failed).toMatchObject({ status: 'failed', attempt: 2, error: { code: 'lease_lost', message: 'lease expired after 2 attempts', retryable: false } });
    expect(await k.leases.results(pool, [{ jobId: job!.id, leaseToken: l3!.leaseToken, outcome: 'succeeded', result: {} }])).toEqual([
      { jobId: job!.id, status: 'lost' },
    ]);
  });

  it('idempotency keys per pool, batches in one transaction', async () => {
    const pool = freshPool();
    const other = freshPool();
    const [a] = await k.jobs.enqueue([{ pool, type: 'ping', idempotencyKey: 'k1' }]);
    const batch = await k.jobs.enqueue([
      { pool, type: 'ping', idempotencyKey: 'k1' },
      { pool, type: 'ping', idempotencyKey: 'k2' },
      { pool, type: 'ping', idempotencyKey: 'k2' },
      { pool: other, type: 'ping', idempotencyKey: 'k1' },
      { pool, type: 'ping' },
    ]);
    expect(batch[0]).toEqual(a);
    expect(batch[1]!.id).toEqual(batch[2]!.id);
    expect(new Set(batch.map((b) => b.id)).size).toBe(4);
    const list = (await k.jobs.list([pool], 'queued', 100)).jobs;
    expect(list.length).toBe(3);
    expect(list[0]!.id).toEqual(batch[4]!.id); // newest first
    const big = await k.jobs.enqueue(Array.from({ length: 1000 }, (_, i) => ({ pool: other, type: 'ping', payload: { delayMs: i } })));
    expect(big.length).toBe(1000);
    expect((await k.jobs.list([other], undefined, 2000)).jobs.length).toBe(1001);
  });

  it('output pages: idempotent by seq, fenced, discarded when the job is leased again', async () => {
    const pool = freshPool();
    const [job] = await k.jobs.enqueue([{ pool, type: 'listAccounts', resource: 'ad' }]);
    const [l1] = await k.leases.claim(pool, 'a1', ['ad'], 1);
    expect(await k.output.append(pool, job!.id, l1!.leaseToken, 0, [{ n: 1 }, { n: 2 }])).toBe('accepted');
    expect(await k.output.append(pool, job!.id, l1!.leaseToken, 0, [{ n: 1 }, { n: 2 }])).toBe('duplicate');
    expect(await k.output.append(pool, job!.id, l1!.leaseToken, 1, [{ n: 3 }])).toBe('accepted');
    expect(await k.output.append(pool, job!.id, 'x'.repeat(40), 2, [{ n: 9 }])).toBe('lost');
    expect(await k.output.append('intruder', job!.id, l1!.leaseToken, 2, [{ n: 9 }])).toBe('not_found');
    expect(await k.jobs.get(job!.id)).toMatchObject({ outputRecords: 3 });
    await k.leases.release(pool, [{ jobId: job!.id, leaseToken: l1!.leaseToken }]);
    const [l2] = await k.leases.claim(pool, 'a2', ['ad'], 1);
    expect(await k.jobs.get(job!.id)).toMatchObject({ outputRecords: 0 });
    const oldPages = await run(k.db, 'SELECT seq FROM outpost_output WHERE job_id = ? AND lease_token = ?', [job!.id, l1!.leaseToken]);
    expect(oldPages).toEqual([]);
    expect(await k.output.append(pool, job!.id, l2!.leaseToken, 0, [{ n: 'a' }])).toBe('accepted');
    expect(await k.output.append(pool, job!.id, l2!.leaseToken, 1, Array.from({ length: 40 }, (_, i) => ({ i })))).toBe('accepted');
    for (let seq = 2; seq < 40; seq++) await k.output.append(pool, job!.id, l2!.leaseToken, seq, [{ seq }]);
    const pages: unknown[][] = [];
    for await (const p of k.output.records(job!.id, l2!.leaseToken)) pages.push(p);
    expect(pages.length).toBe(40);
    expect(pages[0]).toEqual([{ n: 'a' }]);
    expect(pages[39]).toEqual([{ seq: 39 }]);
    await k.leases.results(pool, [{ jobId: job!.id, leaseToken: l2!.leaseToken, outcome: 'succeeded', result: { records: 79 } }]);
    // A retried page after the job finished is still a no-op, not an error.
    expect(await k.output.append(pool, job!.id, l2!.leaseToken, 0, [{ n: 'a' }])).toBe('duplicate');
    expect(await k.jobs.get(job!.id)).toMatchObject({ outputRecords: 79, status: 'succeeded' });
  });

  it('cancel from queued and leased; terminal jobs stay as they are', async () => {
    const pool = freshPool();
    const [q, l] = await k.jobs.enqueue([{ pool, type: 'ping' }, { pool, type: 'ping' }]);
    await k.leases.claim(pool, 'a1', [], 1);
    expect(await k.jobs.cancel(q!.id)).toMatchObject({ status: 'cancelled' });
    expect(await k.jobs.cancel(l!.id)).toMatchObject({ status: 'cancelled' });
    expect(await k.leases.claim(pool, 'a1', [], 5)).toEqual([]);
    expect(await k.jobs.cancel('nope')).toBeUndefined();
  });

  it('tokens: only the sha256 is stored; lookups find pool and role', async () => {
    const pool = freshPool();
    const { token } = await k.tokens.create({ pool, role: 'admin' });
    expect(await k.tokens.lookup(token)).toMatchObject({ pool, role: 'admin', revokedAt: null, expiresAt: null });
    expect(await k.tokens.lookup(token + 'x')).toBeUndefined();
    const rows = await run<Record<string, unknown>>(k.db, 'SELECT * FROM outpost_tokens WHERE pool = ?', [pool]);
    expect(rows.length).toBe(1);
    expect(rows[0]!.hash).toBe(hashToken(token));
    expect(JSON.stringify(rows)).not.toContain(token);
    expect(await k.tokens.poolExists(pool)).toBe(true);
    expect(await k.tokens.poolExists('never')).toBe(false);
  });

  it('presence: online within the window, offline after, inFlight counts leases', async () => {
    const pool = freshPool();
    await k.agents.touch(pool, { agentId: 'a1', hostname: 'h1', version: '1', resources: ['ad'] });
    await k.jobs.enqueue([{ pool, type: 'ping' }, { pool, type: 'ping' }]);
    await k.leases.claim(pool, 'a1', [], 2);
    let list = (await k.agents.list([pool])).agents;
    expect(list).toEqual([
      { agentId: 'a1', pool, hostname: 'h1', version: '1', resources: ['ad'], status: 'online', lastSeenAt: new Date(k.clock.now()).toISOString(), inFlight: 2,
        inFlightJobs: [expect.any(String), expect.any(String)], outdated: false, upgradeRequired: false },
    ]);
    await k.clock.advance(KIT_PRESENCE_MS + 1);
    list = (await k.agents.list([pool])).agents;
    expect(list[0]!.status).toBe('offline');
    await k.agents.touch(pool, { agentId: 'a1' });
    expect((await k.agents.list([pool])).agents[0]!.status).toBe('online');
  });
});
