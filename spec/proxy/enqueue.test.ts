import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { join } from 'node:path';
import { Api, createTestDatabase, startTestProxy, tempDir, type TestProxy } from '../fixtures/proxy-server.js';
import { FakeClock } from '../fixtures/fake-clock.js';
import { waitFor } from '../fixtures/net.js';

/**
 * Enqueue-time checks against a started proxy on both stores: unknown types,
 * bad payloads and resources refused naming the field, nothing stored;
 * expiry of jobs left queued (the sweep on a FakeClock); warnings when no
 * agent serves the resource.
 */
describe.each(['sqlite', 'postgres'] as const)('enqueue checks on %s', (kind) => {
  const tmp = tempDir();
  const clock = new FakeClock(Date.now());
  let drop: (() => Promise<void>) | undefined;
  let t: TestProxy;
  let n = 0;
  async function newPool(): Promise<{ pool: string; agent: Api; admin: Api }> {
    const pool = `e-${kind}-${++n}`;
    return { pool, agent: new Api(t.proxy.url, await t.proxy.createToken({ pool })), admin: new Api(t.proxy.url, await t.proxy.createToken({ pool, admin: true })) };
  }

  beforeAll(async () => {
    let url = 'sqlite:' + join(tmp.dir, 'proxy.db');
    if (kind === 'postgres') {
      const tdb = await createTestDatabase();
      url = tdb.url;
      drop = () => tdb.drop();
    }
    t = await startTestProxy({ store: url, overrides: { leaseTtlMs: 600_000, retention: { sweepIntervalMs: 1000 } }, clock });
  });
  afterAll(async () => {
    await t?.stop();
    await drop?.();
    tmp.cleanup();
  });

  it.each([
    ['an unknown type', { type: 'format.disk', resource: 'db' }, 'body.type: unknown job type'],
    ['a type that is an Object.prototype property', { type: 'constructor' }, 'body.type: unknown job type'],
    ['a payload missing a field', { type: 'grant', resource: 'db', payload: { accountId: 'u1' } }, 'body.payload'],
    ['a payload with a field of the wrong type', { type: 'setAccountEnabled', resource: 'db', payload: { accountId: 'u1', enabled: 'yes' } }, 'body.payload.enabled'],
    ['a payload with an unknown field', { type: 'ping', payload: { delayMs: 1, extra: 1 } }, 'body.payload'],
    ['a resource for a resourceless type', { type: 'ping', resource: 'db' }, 'body.resource: ping takes no resource'],
    ['no resource for an identity type', { type: 'listAccounts' }, 'body.resource: is required for listAccounts'],
    ['an expiresAt more than 30 days ahead', { type: 'ping', expiresAt: new Date(Date.now() + 31 * 86_400_000).toISOString() }, 'body.expiresAt'],
    ['both expiresAt and queueTimeoutMs', { type: 'ping', expiresAt: new Date(Date.now() + 1000).toISOString(), queueTimeoutMs: 5 }, 'body.queueTimeoutMs'],
  ])('%s → 400 invalid_request naming the field, nothing stored', async (_what, job, field) => {
    const { admin } = await newPool();
    const r = await admin.post('/v1/jobs', job);
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('invalid_request');
    expect(r.body.error.message).toContain(field);
    expect((await admin.get('/v1/jobs')).body.jobs).toEqual([]);
  });

  it('a batch names the item and stores none of it', async () => {
    const { admin } = await newPool();
    const r = await admin.post('/v1/jobs/batch', { jobs: [{ type: 'ping' }, { type: 'grant', resource: 'db', payload: { accountId: 'u', entitlementId: 7 } }] });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toContain('body.jobs.1.payload.entitlementId');
    expect((await admin.get('/v1/jobs')).body.jobs).toEqual([]);
  });

  it('a payload value is never echoed in the error', async () => {
    const { admin } = await newPool();
    const r = await admin.post('/v1/jobs', { type: 'setAccountEnabled', resource: 'db', payload: { accountId: 'u1', enabled: 'secret-guess-91' } });
    expect(r.status).toBe(400);
    expect(r.text).not.toContain('secret-guess-91');
  });

  it('warns when no agent of the pool serves the resource, and not once one does', async () => {
    const { pool, agent, admin } = await newPool();
    const first = await admin.post('/v1/jobs', { type: 'listAccounts', resource: 'nope' });
    expect(first.status).toBe(201);
    expect(first.body.warnings).toEqual([`no agent of pool ${pool} serves resource nope`]);
    await agent.lease({ agentId: 'a1', resources: ['hr'], max: 1 });
    const served = await admin.post('/v1/jobs/batch', { jobs: [{ type: 'checkResource', resource: 'hr' }, { type: 'checkResource', resource: 'nope' }, { type: 'ping' }] });
    expect(served.status).toBe(201);
    expect(served.body.jobs[0].warnings).toBeUndefined();
    expect(served.body.jobs[1].warnings).toEqual([`no agent of pool ${pool} serves resource nope`]);
    expect(served.body.jobs[2].warnings).toBeUndefined();
    // Past the presence window the agent no longer counts.
    await clock.advance(t.config.presenceMs + 1);
    expect((await admin.post('/v1/jobs', { type: 'checkResource', resource: 'hr' })).body.warnings).toHaveLength(1);
  });

  it('a queued job past its expiresAt ends failed/expired; a leased one and a later one do not', async () => {
    const { agent, admin } = await newPool();
    const soon = await admin.enqueue({ type: 'ping', expiresAt: new Date(clock.now() + 5000).toISOString() });
    const byTimeout = await admin.enqueue({ type: 'ping', queueTimeoutMs: 5000 });
    const later = await admin.enqueue({ type: 'ping', queueTimeoutMs: 60_000 });
    expect((await admin.get(`/v1/jobs/${soon}`)).body.expiresAt).toBe(new Date(clock.now() + 5000).toISOString());
    const leasedAs = await agent.post('/v1/agent/lease', { agentId: 'a1', hostname: 'h', version: '1', resources: [], max: 1, waitMs: 0 });
    expect(leasedAs.body.jobs[0].id).toBe(soon);
    // The sweep runs every second of the proxy's (fake) clock; a pass on PostgreSQL may outlast one advance.
    await clock.advance(4000);
    expect((await admin.get(`/v1/jobs/${byTimeout}`)).body.status).toBe('queued');
    await waitFor(async () => {
      await clock.advance(1000);
      return (await admin.get(`/v1/jobs/${byTimeout}`)).body.status === 'failed';
    });
    expect((await admin.get(`/v1/jobs/${byTimeout}`)).body).toMatchObject({ status: 'failed', error: { code: 'expired', retryable: false } });
    expect((await admin.get(`/v1/jobs/${soon}`)).body.status).toBe('leased');
    expect((await admin.get(`/v1/jobs/${later}`)).body.status).toBe('queued');
    const failed = (await admin.get('/v1/jobs?status=failed')).body.jobs;
    expect(failed.map((j: { id: string }) => j.id)).toEqual([byTimeout]);
  });

  it('GET /v1/jobs and /v1/agents page with an opaque cursor; a bad cursor is 400', async () => {
    const { agent, admin } = await newPool();
    const ids = [];
    for (let i = 0; i < 7; i++) ids.push(await admin.enqueue({ type: 'ping' }));
    const seen: string[] = [];
    let path = '/v1/jobs?limit=3';
    for (;;) {
      const r = await admin.get(path);
      expect(r.status).toBe(200);
      seen.push(...r.body.jobs.map((j: { id: string }) => j.id));
      if (!r.body.nextCursor) break;
      path = `/v1/jobs?limit=3&cursor=${encodeURIComponent(r.body.nextCursor)}`;
    }
    expect(seen).toEqual([...ids].reverse());
    for (let i = 0; i < 5; i++) await agent.lease({ agentId: `ag-${i}`, max: 1 });
    const p1 = await admin.get('/v1/agents?limit=2');
    expect(p1.body.agents).toHaveLength(2);
    const bare = await admin.get('/v1/agents');
    expect(Array.isArray(bare.body)).toBe(true);
    expect(bare.body).toHaveLength(5);
    const bad = await admin.get('/v1/jobs?cursor=%7B%7D');
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toContain('querystring.cursor');
  });
});
