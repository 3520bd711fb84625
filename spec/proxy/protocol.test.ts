import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { join } from 'node:path';
import { Api, startTestProxy, tempDir, TEST_ADMIN_TOKEN, type TestProxy } from '../fixtures/proxy-server.js';
import { waitFor } from '../fixtures/net.js';

/** Wire protocol v1 over real HTTP against a started proxy on SQLite (real clock). */
describe('proxy protocol over HTTP', () => {
  const tmp = tempDir();
  let t: TestProxy;
  let n = 0;
  /** A pool of its own per test: an agent client and an admin client. */
  async function newPool(): Promise<{ pool: string; agent: Api; admin: Api }> {
    const pool = `pool-${++n}`;
    return {
      pool,
      agent: new Api(t.proxy.url, await t.proxy.createToken({ pool })),
      admin: new Api(t.proxy.url, await t.proxy.createToken({ pool, admin: true })),
    };
  }

  beforeAll(async () => {
    // A long TTL: on a loaded machine no lease may expire mid-test; the expiry test runs its own proxy.
    t = await startTestProxy({ store: 'sqlite:' + join(tmp.dir, 'proxy.db'), overrides: { leaseTtlMs: 600_000, reaperIntervalMs: 100 } });
  });
  afterAll(async () => {
    await t.stop();
    tmp.cleanup();
  });

  it('a parked long poll returns as soon as a job is enqueued', async () => {
    const { agent, admin } = await newPool();
    const waitMs = 20_000;
    const started = Date.now();
    const before = await t.parkedPolls();
    const poll = agent.lease({ waitMs });
    await t.untilParked(before + 1);
    const id = await admin.enqueue({ type: 'ping', payload: { delayMs: 0 } });
    const jobs = await poll;
    expect(jobs.map((j) => j.id)).toEqual([id]);
    expect(jobs[0]).toMatchObject({ type: 'ping', resource: null, payload: { delayMs: 0 }, attempt: 1, leaseTtlMs: 600_000, timeoutMs: 300_000 });
    expect(Date.now() - started).toBeLessThan(waitMs);
  });

  it('an empty poll answers {jobs: []} after waitMs', async () => {
    const { agent } = await newPool();
    expect(await agent.lease({ waitMs: 50 })).toEqual([]);
  });

  it('honours max and offers a job only to an agent that lists its resource', async () => {
    const { agent, admin } = await newPool();
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await admin.enqueue({ type: 'listAccounts', resource: 'ad' }));
    expect(await agent.lease({ resources: ['hr'], waitMs: 0 })).toEqual([]);
    const first = await agent.lease({ resources: ['ad'], max: 2 });
    expect(first.map((j) => j.id)).toEqual(ids.slice(0, 2));
    const rest = await agent.lease({ resources: ['ad'], max: 10 });
    expect(rest.map((j) => j.id)).toEqual(ids.slice(2));
  });

  it('an expired lease is re-offered with attempt + 1; the stale token is lost and changes nothing', async () => {
    const own = await startTestProxy({ store: 'sqlite:' + join(tmp.dir, 'expiry.db'), overrides: { leaseTtlMs: 1000, reaperIntervalMs: 100 } });
    try {
      await expiry(own.agent, own.admin);
    } finally {
      await own.stop();
    }
  });

  async function expiry(agent: Api, admin: Api): Promise<void> {
    const id = await admin.enqueue({ type: 'ping' });
    const [first] = await agent.lease({ agentId: 'a1' });
    // Nobody renews: the reaper (every 100 ms) returns it after the 1 s TTL and wakes this poll.
    const [second] = await agent.lease({ agentId: 'a2', waitMs: 10_000 });
    expect(second).toMatchObject({ id, attempt: 2 });
    expect(second.leaseToken).not.toEqual(first.leaseToken);
    const stale = await agent.post('/v1/agent/results', { agentId: 'a1', results: [{ jobId: id, leaseToken: first.leaseToken, outcome: 'succeeded', result: { stale: true } }] });
    expect(stale.body).toEqual({ results: [{ jobId: id, status: 'lost' }] });
    const hb = await agent.post('/v1/agent/heartbeat', { agentId: 'a1', leases: [{ jobId: id, leaseToken: first.leaseToken }] });
    expect(hb.body).toEqual({ leases: [{ jobId: id, status: 'lost' }] });
    const out = await agent.post(`/v1/agent/jobs/${id}/output`, { leaseToken: first.leaseToken, seq: 0, records: [{ x: 1 }] });
    expect(out.status).toBe(409);
    expect(out.body.error.code).toBe('lease_lost');
    const after = (await admin.get(`/v1/jobs/${id}`)).body;
    expect(after).toMatchObject({ result: null, outputRecords: 0 });
    expect(after.attempt).toBeGreaterThanOrEqual(2);
    const ok = await agent.post('/v1/agent/results', { agentId: 'a2', results: [{ jobId: id, leaseToken: second.leaseToken, outcome: 'succeeded', result: { ok: true } }] });
    // On a loaded machine the second lease may itself have expired by now; either way nothing stale was accepted.
    expect(['accepted', 'lost']).toContain(ok.body.results[0].status);
  }

  it('release gives jobs back at once without spending an attempt', async () => {
    const { agent, admin } = await newPool();
    const id = await admin.enqueue({ type: 'ping' });
    const [l] = await agent.lease({ agentId: 'a1' });
    const before = await t.parkedPolls();
    const parked = agent.lease({ agentId: 'a2', waitMs: 10_000 });
    await t.untilParked(before + 1);
    const rel = await agent.post('/v1/agent/release', { agentId: 'a1', leases: [{ jobId: id, leaseToken: l.leaseToken }] });
    expect(rel.body).toEqual({ leases: [{ jobId: id, status: 'released' }] });
    const [again] = await parked;
    expect(again).toMatchObject({ id, attempt: 1 });
  });

  it('cancel is heard on the next heartbeat; the result then changes nothing', async () => {
    const { agent, admin } = await newPool();
    const id = await admin.enqueue({ type: 'ping', payload: { delayMs: 60_000 } });
    const [l] = await agent.lease();
    const c = await admin.post(`/v1/jobs/${id}/cancel`);
    expect(c.status).toBe(200);
    expect(c.body).toMatchObject({ id, status: 'cancelled' });
    const hb = await agent.post('/v1/agent/heartbeat', { agentId: 'agent-1', leases: [{ jobId: id, leaseToken: l.leaseToken }] });
    expect(hb.body).toEqual({ leases: [{ jobId: id, status: 'cancelled' }] });
    const r = await agent.post('/v1/agent/results', { agentId: 'agent-1', results: [{ jobId: id, leaseToken: l.leaseToken, outcome: 'succeeded', result: {} }] });
    expect(r.body.results[0].status).toBe('lost');
    expect((await admin.get(`/v1/jobs/${id}`)).body.status).toBe('cancelled');
    // Cancelling a terminal job is a no-op that shows the job.
    expect((await admin.post(`/v1/jobs/${id}/cancel`, {})).body.status).toBe('cancelled');
  });

  it('idempotency key returns the first job; batch enqueues in order', async () => {
    const { agent, admin } = await newPool();
    const a = await admin.post('/v1/jobs', { type: 'ping', idempotencyKey: 'sync-42' });
    const b = await admin.post('/v1/jobs', { type: 'ping', idempotencyKey: 'sync-42' });
    expect(a.status).toBe(201);
    expect(b.body).toEqual(a.body);
    const batch = await admin.post('/v1/jobs/batch', { jobs: Array.from({ length: 50 }, (_, i) => ({ type: 'ping', payload: { delayMs: i } })) });
    expect(batch.status).toBe(201);
    expect(batch.body.jobs.length).toBe(50);
    const leased = await agent.lease({ max: 100 });
    expect(leased.map((j) => j.id)).toEqual([a.body.id, ...batch.body.jobs.map((j: { id: string }) => j.id)]);
    const list = await admin.get('/v1/jobs?status=leased&limit=5');
    expect(list.body.jobs.length).toBe(5);
  });

  it('pool isolation: a token of pool B can neither see, lease, renew nor complete pool A’s jobs', async () => {
    const A = await newPool();
    const B = await newPool();
    const id = await A.admin.enqueue({ type: 'ping' });
    expect(await B.agent.lease({ waitMs: 0 })).toEqual([]);
    const [l] = await A.agent.lease();
    const ref = { jobId: id, leaseToken: l.leaseToken };
    expect((await B.agent.post('/v1/agent/heartbeat', { agentId: 'b', leases: [ref] })).body.leases[0].status).toBe('lost');
    expect((await B.agent.post('/v1/agent/results', { agentId: 'b', results: [{ ...ref, outcome: 'succeeded', result: {} }] })).body.results[0].status).toBe('lost');
    expect((await B.agent.post('/v1/agent/release', { agentId: 'b', leases: [ref] })).body.leases[0].status).toBe('lost');
    expect((await B.agent.post(`/v1/agent/jobs/${id}/output`, { leaseToken: l.leaseToken, seq: 0, records: [1] })).status).toBe(404);
    expect((await B.admin.get(`/v1/jobs/${id}`)).status).toBe(404);
    expect((await B.admin.get(`/v1/jobs/${id}/output`)).status).toBe(404);
    expect((await B.admin.post(`/v1/jobs/${id}/cancel`)).status).toBe(404);
    expect((await B.admin.get(`/v1/jobs?pool=${A.pool}`)).status).toBe(403);
    expect((await B.admin.get(`/v1/agents?pool=${A.pool}`)).status).toBe(403);
    expect((await B.admin.post('/v1/jobs', { pool: A.pool, type: 'ping' })).status).toBe(403);
    expect((await B.admin.get('/v1/jobs')).body.jobs).toEqual([]);
    // An agent token is not an admin token.
    expect((await A.agent.post('/v1/jobs', { type: 'ping' })).status).toBe(403);
    expect((await A.agent.get(`/v1/jobs/${id}`)).status).toBe(403);
    expect((await A.admin.get(`/v1/jobs/${id}`)).body).toMatchObject({ status: 'leased', attempt: 1 });
  });

  it('the configured admin token acts for every pool and must name it', async () => {
    const A = await newPool();
    const root = new Api(t.proxy.url, TEST_ADMIN_TOKEN);
    const missing = await root.post('/v1/jobs', { type: 'ping' });
    expect(missing.status).toBe(400);
    expect(missing.body.error.message).toContain('body.pool');
    expect((await root.post('/v1/jobs', { pool: 'no-such-pool', type: 'ping' })).status).toBe(404);
    const id = await root.enqueue({ pool: A.pool, type: 'ping' });
    expect((await A.admin.get(`/v1/jobs/${id}`)).body.pool).toBe(A.pool);
    expect((await root.get(`/v1/jobs?pool=${A.pool}`)).body.jobs.map((j: { id: string }) => j.id)).toEqual([id]);
    // The configured admin token has no pool: it cannot act as an agent.
    expect((await root.post('/v1/agent/lease', { agentId: 'x', hostname: 'h', version: '1', resources: [], max: 1, waitMs: 0 })).status).toBe(403);
  });

  it('an agent that disconnects mid-poll leaves its job to the next poller, attempt 1', async () => {
    const { agent, admin } = await newPool();
    const ac = new AbortController();
    const before = await t.parkedPolls();
    const gone = agent.lease({ agentId: 'leaver', waitMs: 20_000 }, ac.signal).catch((e: Error) => e);
    await t.untilParked(before + 1);
    ac.abort();
    expect(await gone).toMatchObject({ name: 'AbortError' });
    // The proxy has noticed the disconnect and dropped the poll.
    await t.untilParked(before);
    const id = await admin.enqueue({ type: 'ping' });
    const [job] = await agent.lease({ agentId: 'stayer', waitMs: 5000 });
    expect(job).toMatchObject({ id, attempt: 1 });
    expect((await admin.get(`/v1/jobs/${id}`)).body).toMatchObject({ agentId: 'stayer', attempt: 1 });
  });

  it('output pages are idempotent by seq and read back as NDJSON in order', async () => {
    const { agent, admin } = await newPool();
    const id = await admin.enqueue({ type: 'listAccounts', resource: 'ad' });
    const [l] = await agent.lease({ resources: ['ad'] });
    const page = (seq: number, records: unknown[]) => agent.post(`/v1/agent/jobs/${id}/output`, { leaseToken: l.leaseToken, seq, records });
    expect((await page(1, [{ n: 3 }])).body).toEqual({ status: 'accepted' });
    expect((await page(0, [{ n: 1 }, { n: 2 }])).body).toEqual({ status: 'accepted' });
    expect((await page(0, [{ n: 1 }, { n: 2 }])).body).toEqual({ status: 'duplicate' });
    const done = await agent.post('/v1/agent/results', { agentId: 'agent-1', results: [{ jobId: id, leaseToken: l.leaseToken, outcome: 'succeeded', result: { records: 3 } }] });
    expect(done.body.results[0].status).toBe('accepted');
    const out = await admin.get(`/v1/jobs/${id}/output`);
    expect(out.status).toBe(200);
    expect(out.headers.get('content-type')).toContain('application/x-ndjson');
    expect(out.text).toBe('{"n":1}\n{"n":2}\n{"n":3}\n');
    expect((await admin.get(`/v1/jobs/${id}`)).body.outputRecords).toBe(3);
  });

  it('pages of an earlier attempt are discarded when the job is leased again', async () => {
    const { agent, admin } = await newPool();
    const id = await admin.enqueue({ type: 'listGrants', resource: 'ad' });
    const [l1] = await agent.lease({ resources: ['ad'] });
    await agent.post(`/v1/agent/jobs/${id}/output`, { leaseToken: l1.leaseToken, seq: 0, records: [{ attempt: 1 }] });
    await agent.post('/v1/agent/release', { agentId: 'agent-1', leases: [{ jobId: id, leaseToken: l1.leaseToken }] });
    const [l2] = await agent.lease({ resources: ['ad'] });
    expect((await admin.get(`/v1/jobs/${id}/output`)).text).toBe('');
    await agent.post(`/v1/agent/jobs/${id}/output`, { leaseToken: l2.leaseToken, seq: 0, records: [{ attempt: 2 }] });
    expect((await admin.get(`/v1/jobs/${id}/output`)).text).toBe('{"attempt":2}\n');
  });

  it('GET /v1/jobs/{id}?waitMs answers when the job ends', async () => {
    const { agent, admin } = await newPool();
    const id = await admin.enqueue({ type: 'ping' });
    const [l] = await agent.lease();
    const waiting = admin.get(`/v1/jobs/${id}?waitMs=20000`);
    // A job watch shows in no metric: this pause only makes the result arrive while the GET waits
    // (without it the test still passes, on the GET's no-wait path).
    await new Promise((r) => setTimeout(r, 100));
    await agent.post('/v1/agent/results', { agentId: 'agent-1', results: [{ jobId: id, leaseToken: l.leaseToken, outcome: 'failed', error: { code: 'x', message: 'boom', retryable: false } }] });
    const job = (await waiting).body;
    expect(job).toMatchObject({ id, status: 'failed', error: { code: 'x', message: 'boom', retryable: false } });
  });

  it('lists agents with presence and in-flight counts; health and readiness; openapi', async () => {
    const { pool, agent, admin } = await newPool();
    await admin.enqueue({ type: 'ping' });
    await agent.lease({ agentId: 'pod-1', resources: ['ad'] });
    const agents = await admin.get('/v1/agents');
    expect(agents.body).toEqual([
      { agentId: 'pod-1', pool, hostname: 'host-1', version: '0.1.0', resources: ['ad'], status: 'online', lastSeenAt: expect.any(String), inFlight: 1,
        inFlightJobs: [expect.any(String)], outdated: false, upgradeRequired: false },
    ]);
    expect((await admin.get('/healthz')).status).toBe(200);
    expect((await admin.get('/readyz')).status).toBe(200);
    const doc = (await admin.get('/openapi.json')).body;
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/agent/lease', '/v1/jobs/batch', '/v1/agents']));
    expect(doc.components.schemas.LeaseRequest.additionalProperties).toBe(false);
  });

  it('stop answers parked polls with {jobs: []} and is idempotent', async () => {
    const own = await startTestProxy({ store: 'sqlite:' + join(tmp.dir, 'stop.db') });
    const parked = own.agent.lease({ waitMs: 20_000 });
    await own.untilParked(1);
    const stopping = own.stop();
    expect(await parked).toEqual([]);
    await stopping;
    await own.proxy.stop();
    expect(own.proxy.state).toBe('stopped');
    await waitFor(() => own.proxy.state === 'stopped');
  });
});
