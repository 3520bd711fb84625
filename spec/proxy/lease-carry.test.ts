import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { Type } from '@sinclair/typebox';
import { join } from 'node:path';
import { Api, startTestProxy, tempDir, type TestProxy } from '../fixtures/proxy-server.js';
import { LeasedJob } from '../../lib/protocol/schemas.js';
import { isValid } from '../../lib/protocol/validate.js';

/**
 * Results and renewals carried on a lease request (`results`, `leases`), over
 * real HTTP against a started proxy on SQLite: recorded before the claim and
 * before any hold, fenced per (jobId, leaseToken) like the separate routes,
 * never held back by a long poll; the separate routes and the old request
 * shape still work (an agent of the previous version).
 */
describe('lease requests that carry results and renewals', () => {
  const tmp = tempDir();
  let t: TestProxy;
  let n = 0;
  async function newPool(): Promise<{ agent: Api; admin: Api }> {
    const pool = `carry-${++n}`;
    return { agent: new Api(t.proxy.url, await t.proxy.createToken({ pool })), admin: new Api(t.proxy.url, await t.proxy.createToken({ pool, admin: true })) };
  }
  const poll = (extra: Record<string, unknown> = {}) => ({ agentId: 'agent-1', hostname: 'h', version: '0.1.0', resources: [], max: 10, waitMs: 0, ...extra });
  const ok = (j: { id: string; leaseToken: string }, result: unknown = { ok: true }) => ({ jobId: j.id, leaseToken: j.leaseToken, outcome: 'succeeded', result });

  beforeAll(async () => {
    t = await startTestProxy({ store: 'sqlite:' + join(tmp.dir, 'proxy.db'), overrides: { leaseTtlMs: 600_000, reaperIntervalMs: 100 } });
  });
  afterAll(async () => {
    await t.stop();
    tmp.cleanup();
  });

  it('every answer lists what a lease request may carry', async () => {
    const { agent } = await newPool();
    const r = await agent.post('/v1/agent/lease', poll());
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ jobs: [], carries: ['results', 'leases'] });
  });

  it('records carried results before the claim and answers their statuses with the next jobs', async () => {
    const { agent, admin } = await newPool();
    const a = await admin.enqueue({ type: 'ping' });
    const [ja] = await agent.lease({ max: 1 });
    const b = await admin.enqueue({ type: 'ping' });
    const r = await agent.post('/v1/agent/lease', poll({ results: [ok(ja, { n: 1 })] }));
    expect(r.status).toBe(200);
    expect(r.body.results).toEqual([{ jobId: a, status: 'accepted' }]);
    expect(r.body.jobs.map((j: { id: string }) => j.id)).toEqual([b]);
    expect(typeof r.body.heldMs).toBe('number');
    expect((await admin.get(`/v1/jobs/${a}`)).body).toMatchObject({ status: 'succeeded', result: { n: 1 } });
    // Repeating the item is a no-op: accepted again, result unchanged.
    const again = await agent.post('/v1/agent/lease', poll({ results: [ok(ja, { n: 2 })] }));
    expect(again.body.results).toEqual([{ jobId: a, status: 'accepted' }]);
    expect((await admin.get(`/v1/jobs/${a}`)).body.result).toEqual({ n: 1 });
  });

  it('a poll that carries results is answered at once, not held: the statuses are never held back', async () => {
    const { agent, admin } = await newPool();
    const a = await admin.enqueue({ type: 'ping' });
    const [ja] = await agent.lease({ max: 1 });
    const parkedBefore = await t.parkedPolls();
    const started = performance.now();
    // Nothing else is queued: without results this poll would park for 20 s.
    const r = await agent.post('/v1/agent/lease', poll({ waitMs: 20_000, results: [ok(ja)] }));
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(r.body).toEqual({ jobs: [], results: [{ jobId: a, status: 'accepted' }], carries: ['results', 'leases'] });
    expect(await t.parkedPolls()).toBe(parkedBefore);
    expect((await admin.get(`/v1/jobs/${a}`)).body.status).toBe('succeeded');
  });

  it('fences carried results per (jobId, leaseToken): a stale token is lost and changes nothing, the rest is recorded', async () => {
    const { agent, admin } = await newPool();
    const a = await admin.enqueue({ type: 'ping' });
    const b = await admin.enqueue({ type: 'ping' });
    const [ja, jb] = await agent.lease({ max: 2 });
    const stale = { ...ok(jb), leaseToken: 'x'.repeat(32) };
    const r = await agent.post('/v1/agent/lease', poll({ results: [ok(ja), stale] }));
    expect(r.body.results).toEqual([
      { jobId: a, status: 'accepted' },
      { jobId: b, status: 'lost' },
    ]);
    expect((await admin.get(`/v1/jobs/${b}`)).body).toMatchObject({ status: 'leased', result: null });
    // A cancelled job's result is lost too; its renewal says cancelled.
    const c = await admin.enqueue({ type: 'ping' });
    const [jc] = await agent.lease({ max: 1 });
    await admin.post(`/v1/jobs/${c}/cancel`);
    const r2 = await agent.post('/v1/agent/lease', poll({ leases: [{ jobId: jc.id, leaseToken: jc.leaseToken }, { jobId: jb.id, leaseToken: jb.leaseToken }] }));
    expect(r2.body.leases).toEqual([
      { jobId: c, status: 'cancelled' },
      { jobId: b, status: 'ok', leaseTtlMs: 600_000 },
    ]);
    const r3 = await agent.post('/v1/agent/lease', poll({ results: [{ jobId: c, leaseToken: jc.leaseToken, outcome: 'failed', error: { code: 'x', message: 'y', retryable: true } }] }));
    expect(r3.body.results).toEqual([{ jobId: c, status: 'lost' }]);
    expect((await admin.get(`/v1/jobs/${c}`)).body.status).toBe('cancelled');
  });

  it('renews carried leases like a heartbeat: ok with the TTL, lost for a stale token', async () => {
    const { agent, admin } = await newPool();
    const a = await admin.enqueue({ type: 'ping' });
    const [ja] = await agent.lease({ max: 1 });
    const r = await agent.post('/v1/agent/lease', poll({ leases: [{ jobId: ja.id, leaseToken: ja.leaseToken }, { jobId: ja.id.slice(0, -1) + 'z', leaseToken: ja.leaseToken }] }));
    expect(r.body.leases[0]).toEqual({ jobId: a, status: 'ok', leaseTtlMs: 600_000 });
    expect(r.body.leases[1].status).toBe('lost');
  });

  it('refuses a malformed carried item as a whole (400), recording nothing', async () => {
    const { agent, admin } = await newPool();
    const a = await admin.enqueue({ type: 'ping' });
    const [ja] = await agent.lease({ max: 1 });
    const r = await agent.post('/v1/agent/lease', poll({ results: [ok(ja), { jobId: 'j', outcome: 'succeeded' }] }));
    expect(r.status).toBe(400);
    expect((await admin.get(`/v1/jobs/${a}`)).body.status).toBe('leased');
  });

  it('serves an agent of the previous version unchanged: old request shape, separate results and heartbeat, answers its schema accepts', async () => {
    const { agent, admin } = await newPool();
    // The lease answer schema of the previous version (extra fields allowed, as in every answer schema).
    const OldLeaseResponse = Type.Object({ jobs: Type.Array(LeasedJob), heldMs: Type.Optional(Type.Integer({ minimum: 0 })) });
    const a = await admin.enqueue({ type: 'ping' });
    const leased = await agent.post('/v1/agent/lease', { agentId: 'old-1', hostname: 'h', version: '0.1.0', resources: [], max: 5, waitMs: 0 });
    expect(isValid(OldLeaseResponse, leased.body)).toBe(true);
    const [ja] = leased.body.jobs;
    const hb = await agent.post('/v1/agent/heartbeat', { agentId: 'old-1', leases: [{ jobId: ja.id, leaseToken: ja.leaseToken }] });
    expect(hb.body.leases).toEqual([{ jobId: a, status: 'ok', leaseTtlMs: 600_000 }]);
    const res = await agent.post('/v1/agent/results', { agentId: 'old-1', results: [ok(ja)] });
    expect(res.body.results).toEqual([{ jobId: a, status: 'accepted' }]);
    expect((await admin.get(`/v1/jobs/${a}`)).body.status).toBe('succeeded');
  });
});
