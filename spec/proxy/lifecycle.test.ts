import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { join } from 'node:path';
import { connect } from 'node:net';
import { FakeClock } from '../fixtures/fake-clock.js';
import { startTestProxy, tempDir, type TestProxy } from '../fixtures/proxy-server.js';
import { waitFor } from '../fixtures/net.js';

/** Job life over HTTP with a FakeClock: lease expiry, heartbeats, retry backoff, exhausted attempts. */
describe('job life with a fake clock', () => {
  const tmp = tempDir();
  const clock = new FakeClock();
  let t: TestProxy;
  const TTL = 2000;
  const REAPER = 200;

  beforeAll(async () => {
    t = await startTestProxy({ store: 'sqlite:' + join(tmp.dir, 'proxy.db'), overrides: { leaseTtlMs: TTL, reaperIntervalMs: REAPER }, clock });
  });
  afterAll(async () => {
    await t.stop();
    tmp.cleanup();
  });

  const status = async (id: string) => (await t.admin.get(`/v1/jobs/${id}`)).body;
  const hb = (id: string, leaseToken: string) => t.agent.post('/v1/agent/heartbeat', { agentId: 'agent-1', leases: [{ jobId: id, leaseToken }] });

  it('heartbeats keep a lease past its TTL; without them it expires, wakes a parked poll with attempt + 1, and ends failed', async () => {
    const id = await t.admin.enqueue({ type: 'ping', maxAttempts: 2 });
    const [l1] = await t.agent.lease({ agentId: 'a1' });
    for (let i = 0; i < 4; i++) {
      await clock.advance(TTL / 2);
      expect((await hb(id, l1.leaseToken)).body.leases[0]).toEqual({ jobId: id, status: 'ok', leaseTtlMs: TTL });
    }
    expect(await status(id)).toMatchObject({ status: 'leased', attempt: 1 });
    // A poll parks (its 10 s deadline is on the fake clock); the expiry must wake it.
    const parked = t.agent.lease({ agentId: 'a2', waitMs: 10_000 });
    await t.untilParked(1);
    await clock.advance(TTL + REAPER);
    const [l2] = await parked;
    expect(l2).toMatchObject({ id, attempt: 2 });
    expect((await hb(id, l1.leaseToken)).body.leases[0].status).toBe('lost');
    await clock.advance(TTL + REAPER);
    await waitFor(async () => (await status(id)).status === 'failed');
    expect(await status(id)).toMatchObject({
      status: 'failed',
      attempt: 2,
      error: { code: 'lease_lost', message: 'lease expired after 2 attempts', retryable: false },
    });
  });

  it('a retryable failure comes back after its backoff; exhausted attempts end failed with the last error', async () => {
    const id = await t.admin.enqueue({ type: 'checkResource', resource: 'db', maxAttempts: 2 });
    const [l1] = await t.agent.lease({ resources: ['db'] });
    const error = { code: 'unreachable', message: 'connection refused', retryable: true };
    const fail = (leaseToken: string) => t.agent.post('/v1/agent/results', { agentId: 'agent-1', results: [{ jobId: id, leaseToken, outcome: 'failed', error }] });
    expect((await fail(l1.leaseToken)).body.results[0].status).toBe('accepted');
    expect(await status(id)).toMatchObject({ status: 'queued', attempt: 1, error });
    // Backoff: not before its delay (at most 2 s for attempt 1).
    expect(await t.agent.lease({ resources: ['db'] })).toEqual([]);
    await clock.advance(2000);
    const [l2] = await t.agent.lease({ resources: ['db'] });
    expect(l2).toMatchObject({ id, attempt: 2 });
    expect((await fail(l2.leaseToken)).body.results[0].status).toBe('accepted');
    expect(await status(id)).toMatchObject({ status: 'failed', attempt: 2, error });
    await clock.advance(300_000);
    expect(await t.agent.lease({ resources: ['db'] })).toEqual([]);
  });

  it('caps a poll at maxWaitMs and shows an agent offline after the presence window', async () => {
    const parked = t.agent.lease({ agentId: 'sleepy', waitMs: 600_000 });
    await t.untilParked(1);
    await clock.advance(t.config.maxWaitMs);
    expect(await parked).toEqual([]);
    const seen = async () => ((await t.admin.get('/v1/agents')).body as Array<{ agentId: string; status: string }>).find((a) => a.agentId === 'sleepy');
    expect((await seen())?.status).toBe('online');
    await clock.advance(t.config.presenceMs + 1);
    expect((await seen())?.status).toBe('offline');
    await t.agent.lease({ agentId: 'sleepy' });
    expect((await seen())?.status).toBe('online');
  });

  it('a parked poll is woken when a retry’s backoff ends', async () => {
    const id = await t.admin.enqueue({ type: 'ping' });
    const [l1] = await t.agent.lease();
    await t.agent.post('/v1/agent/results', {
      agentId: 'agent-1',
      results: [{ jobId: id, leaseToken: l1.leaseToken, outcome: 'failed', error: { code: 'busy', message: 'later', retryable: true } }],
    });
    const parked = t.agent.lease({ waitMs: 10_000 });
    await t.untilParked(1);
    await clock.advance(2000);
    const [l2] = await parked;
    expect(l2).toMatchObject({ id, attempt: 2 });
  });
});

/** The lease answer that cannot be delivered gives its jobs back at once, spending no attempt. */
describe('undelivered lease answers', () => {
  const tmp = tempDir();
  let t: TestProxy;
  beforeAll(async () => {
    // A long TTL: only the give-back, never an expiry, may return these jobs.
    t = await startTestProxy({ store: 'sqlite:' + join(tmp.dir, 'proxy.db'), overrides: { leaseTtlMs: 600_000 } });
  });
  afterAll(async () => {
    await t.stop();
    tmp.cleanup();
  });

  it('an agent that stops reading and drops the connection mid-answer loses nothing', async () => {
    // 24 jobs of 1.5 MB: far more than loopback socket buffers hold, so the answer cannot finish while the client does not read.
    const blob = 'x'.repeat(1_500_000);
    const ids: string[] = [];
    // sql.query: the one operation whose payload may carry a long string (a parameter).
    for (let i = 0; i < 24; i++) ids.push(await t.admin.enqueue({ type: 'sql.query', resource: 'db', payload: { query: 'q', params: { blob } } }));
    const url = new URL(t.proxy.url);
    const body = JSON.stringify({ agentId: 'stalled', hostname: 'h', version: '1', resources: ['db'], max: 100, waitMs: 0 });
    const sock = connect(Number(url.port), url.hostname);
    await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
    sock.pause();
    sock.write(
      `POST /v1/agent/lease HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${t.agent.token}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    await waitFor(async () => (await t.admin.get(`/v1/jobs/${ids[0]}`)).body.status === 'leased');
    sock.destroy();
    await waitFor(async () => (await t.admin.get(`/v1/jobs/${ids[23]}`)).body.status === 'queued');
    const again = await t.agent.lease({ agentId: 'healthy', resources: ['db'], max: 100 });
    expect(again.map((j) => j.id).sort()).toEqual([...ids].sort());
    expect(again.every((j) => j.attempt === 1)).toBe(true);
  });
});
