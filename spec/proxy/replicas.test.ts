import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import pg from 'pg';
import { NOTIFY_CHANNEL } from '../../lib/proxy/store/events.js';
import { FakeClock } from '../fixtures/fake-clock.js';
import { Api, createTestDatabase, startTestProxy, TEST_ADMIN_TOKEN, type TestProxy } from '../fixtures/proxy-server.js';

/**
 * Two in-process replicas on one PostgreSQL database, each on a FakeClock
 * that never moves: the 2 s re-check cannot fire, so a wake-up can only come
 * from the NOTIFY sent in the enqueue transaction.
 */
describe('replicas on PostgreSQL wake each other by NOTIFY', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let a: TestProxy;
  let b: TestProxy;
  beforeAll(async () => {
    db = await createTestDatabase();
    a = await startTestProxy({ store: db.url, clock: new FakeClock(), pool: 'shared' });
    b = await startTestProxy({ store: db.url, clock: new FakeClock(), pool: 'shared' });
  });
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await db?.drop();
  });

  it('enqueue, release and expiry on one replica wake a poll parked on the other', async () => {
    const root = new Api(a.proxy.url, TEST_ADMIN_TOKEN);
    const parked = b.agent.lease({ agentId: 'on-b', waitMs: 10_000 });
    await b.untilParked(1);
    const id = await root.enqueue({ pool: 'shared', type: 'ping' });
    const [job] = await parked;
    expect(job).toMatchObject({ id, attempt: 1 });

    const parkedOnA = a.agent.lease({ agentId: 'on-a', waitMs: 10_000 });
    await a.untilParked(1);
    const rel = await b.agent.post('/v1/agent/release', { agentId: 'on-b', leases: [{ jobId: id, leaseToken: job.leaseToken }] });
    expect(rel.body.leases[0].status).toBe('released');
    const [again] = await parkedOnA;
    expect(again).toMatchObject({ id, attempt: 1 });
  });

  it('a batch wakes as many parked polls as it has fitting jobs, across replicas', async () => {
    const polls = [b.agent.lease({ agentId: 'b1', waitMs: 10_000, max: 1, resources: ['ad'] }), b.agent.lease({ agentId: 'b2', waitMs: 10_000, max: 1, resources: ['ad'] })];
    await b.untilParked(2);
    const res = await a.admin.post('/v1/jobs/batch', { jobs: [{ type: 'ping' }, { type: 'listAccounts', resource: 'ad' }] });
    expect(res.status).toBe(201);
    const got = (await Promise.all(polls)).flat();
    expect(got.map((j) => j.id).sort()).toEqual(res.body.jobs.map((j: { id: string }) => j.id).sort());
  });

  it('the NOTIFY goes out with the insert (one statement), and not for a job its idempotency key turned away', async () => {
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    const heard: string[] = [];
    listener.on('notification', (n) => heard.push(n.payload ?? ''));
    try {
      await listener.query(`LISTEN ${NOTIFY_CHANNEL}`);
      const root = new Api(a.proxy.url, TEST_ADMIN_TOKEN);
      const first = await root.enqueue({ pool: 'shared', type: 'ping', idempotencyKey: 'once' });
      const deadline = Date.now() + 5000;
      while (heard.length < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(heard).toHaveLength(1);
      expect(heard[0]).toMatch(/ shared -=1$/);
      // The job row is there for whoever the NOTIFY woke.
      const view = await a.admin.get(`/v1/jobs/${first}`);
      expect(view.body).toMatchObject({ id: first, status: 'queued' });
      const again = await root.enqueue({ pool: 'shared', type: 'ping', idempotencyKey: 'once' });
      expect(again).toBe(first);
      await new Promise((r) => setTimeout(r, 300));
      expect(heard).toHaveLength(1);
    } finally {
      await listener.end();
    }
  });
});
