import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { closeDb, openDb, type Db } from '../../lib/proxy/store/db.js';
import { migrate } from '../../lib/proxy/store/schema.js';
import { JobStore } from '../../lib/proxy/store/jobs.js';
import { LeaseStore } from '../../lib/proxy/store/leases.js';
import type { ResultItem } from '../../lib/protocol/schemas.js';
import { FakeClock } from '../fixtures/fake-clock.js';
import { createTestDatabase } from '../fixtures/proxy-server.js';
import { recordEvents } from '../fixtures/proxy-store.js';

/**
 * Replicas claiming from one PostgreSQL database at the same time, each on a
 * connection pool of its own: the claim picks and locks rows with
 * `FOR UPDATE SKIP LOCKED` (leases-pg.ts), on its own and inside a poll's one
 * statement with the previous batch's successes. Whatever the interleaving,
 * every job is leased exactly once and every success lands on the lease that
 * was handed out. (Without the lock, replicas lease the same rows and one of
 * them loses its results: this test fails then.)
 */
describe('concurrent claims on one PostgreSQL database', () => {
  const JOBS = 1200;
  const REPLICAS = 4;
  const pool = 'race';
  const clock = new FakeClock();
  const events = recordEvents();
  let pgdb: Awaited<ReturnType<typeof createTestDatabase>>;
  const dbs: Db[] = [];

  beforeAll(async () => {
    pgdb = await createTestDatabase();
    for (let i = 0; i <= REPLICAS; i++) dbs.push(await openDb(pgdb.url));
    await migrate(dbs[0]!);
  }, 30_000);
  afterAll(async () => {
    for (const d of dbs) await closeDb(d);
    await pgdb?.drop();
  });

  it('leases each job once and records each success on its lease, with claims and polls racing', async () => {
    const jobs = new JobStore({ db: dbs[0]!, clock, events, replicaId: 'r0' });
    for (let i = 0; i < JOBS; i += 400) await jobs.enqueue(Array.from({ length: 400 }, () => ({ pool, type: 'ping' })));

    const leasedBy = new Map<string, string[]>();
    const succeeded = new Map<string, string>();
    async function replica(n: number): Promise<void> {
      const leases = new LeaseStore({ leaseTtlMs: 60_000 }, { db: dbs[n]!, clock, events, replicaId: `r${n}` });
      let carried: ResultItem[] = [];
      // Every carried success must be accepted, on the lease it was handed.
      const record = (statuses: ReadonlyArray<{ jobId: string; status: string }>): void => {
        for (const r of statuses) {
          expect(r.status).toBe('accepted');
          succeeded.set(r.jobId, carried.find((c) => c.jobId === r.jobId)!.leaseToken);
        }
      };
      for (let empty = 0, round = 0; empty < 2; round++) {
        // Odd sizes; every other replica carries its last batch's successes (the poll's one statement), the
        // others record them in a call of their own and then claim.
        const max = 3 + ((n + round) % 9);
        const separate = n % 2 === 0 || carried.length === 0;
        const results = separate && carried.length ? await leases.results(pool, carried) : undefined;
        const settled = separate ? undefined : await leases.settleAndClaimJson(pool, `agent-${n}`, { results: carried }, [], max);
        const claimed = settled?.claimed ?? (await leases.claimJson(pool, `agent-${n}`, [], max));
        record(results ?? settled?.results ?? []);
        carried = claimed.refs.map((ref) => ({ jobId: ref.jobId, leaseToken: ref.leaseToken, outcome: 'succeeded' as const, result: { by: n } }));
        for (const ref of claimed.refs) leasedBy.set(ref.jobId, [...(leasedBy.get(ref.jobId) ?? []), ref.leaseToken]);
        empty = claimed.refs.length === 0 ? empty + 1 : 0;
      }
      // The last batch is settled on its own.
      if (carried.length) record(await leases.results(pool, carried));
    }
    await Promise.all(Array.from({ length: REPLICAS }, (_, i) => replica(i + 1)));

    expect(leasedBy.size).toBe(JOBS);
    expect([...leasedBy.values()].filter((tokens) => tokens.length !== 1)).toEqual([]);
    expect(succeeded.size).toBe(JOBS);
    for (const [id, token] of succeeded) expect(leasedBy.get(id)).toEqual([token]);
    const db = dbs[0]!;
    if (db.dialect !== 'postgres') throw new Error('a PostgreSQL store was expected');
    const rows = await db.knex('outpost_jobs').where({ pool }).select('status', 'attempt', 'result_token');
    expect(rows.filter((r: { status: string; attempt: number }) => r.status !== 'succeeded' || Number(r.attempt) !== 1)).toEqual([]);
  }, 60_000);
});
