import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { join } from 'node:path';
import { connect } from 'node:net';
import { Api, createTestDatabase, startTestProxy, tempDir, TEST_ADMIN_TOKEN, type TestProxy } from '../fixtures/proxy-server.js';
import { sample } from '../fixtures/metrics.js';
import { waitFor } from '../fixtures/net.js';
import { loadProxyConfig } from '../../lib/config/proxy.js';

/** Small quotas, so that each is reached in a few requests. */
const QUOTAS = {
  agentsPerPool: 3,
  agentInfoBytes: 300,
  queuedJobsPerPool: 5,
  outputBytesPerJob: 1000,
  outputBytesPerPool: 1500,
};

async function scrape(t: TestProxy): Promise<string> {
  // With the configured admin token: a scrape allowed to see everything.
  return (await t.admin.as(TEST_ADMIN_TOKEN).get('/metrics')).text;
}

function expectRefused(r: { status: number; body: any; headers: Headers }, status: 429 | 413, what: string): void {
  expect(r.status).toBe(status);
  expect(r.body.error.code).toBe(status === 429 ? 'rate_limited' : 'too_large');
  expect(r.body.error.message).toContain(what);
  if (status === 429) expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
}

/** Each store-backed quota reached over HTTP, answered 429/413, and nothing stored beyond it. */
describe.each(['sqlite', 'postgres'] as const)('quotas on %s', (kind) => {
  const tmp = tempDir();
  let drop: (() => Promise<void>) | undefined;
  let t: TestProxy;
  let n = 0;
  async function newPool(): Promise<{ pool: string; agent: Api; admin: Api }> {
    const pool = `q-${kind}-${++n}`;
    return { pool, agent: new Api(t.proxy.url, await t.proxy.createToken({ pool })), admin: new Api(t.proxy.url, await t.proxy.createToken({ pool, admin: true })) };
  }
  const poll = (agent: Api, agentId: string, extra: Record<string, unknown> = {}) =>
    agent.post('/v1/agent/lease', { agentId, hostname: 'h', version: '1', resources: ['db'], max: 1, waitMs: 0, ...extra });

  beforeAll(async () => {
    let url = 'sqlite:' + join(tmp.dir, 'proxy.db');
    if (kind === 'postgres') {
      const tdb = await createTestDatabase();
      url = tdb.url;
      drop = () => tdb.drop();
    }
    t = await startTestProxy({ store: url, overrides: { leaseTtlMs: 600_000, quotas: QUOTAS } });
  });
  afterAll(async () => {
    await t?.stop();
    await drop?.();
    tmp.cleanup();
  });

  it('agents per pool: a new agentId beyond the limit gets 429 and is not stored; known agents still poll', async () => {
    const { agent, admin } = await newPool();
    for (const id of ['a1', 'a2', 'a3']) expect((await poll(agent, id)).status).toBe(200);
    expectRefused(await poll(agent, 'a4'), 429, 'quotas.agentsPerPool');
    expect((await poll(agent, 'a2', { hostname: 'renamed' })).status).toBe(200);
    const list = await admin.get('/v1/agents?limit=10');
    expect(list.body.agents.map((a: { agentId: string }) => a.agentId)).toEqual(['a1', 'a2', 'a3']);
    expect(sample(await scrape(t), 'outpost_proxy_quota_refusals_total', { quota: 'agents_per_pool' })).toBeGreaterThanOrEqual(1);
  });

  it('agent description: more than quotas.agentInfoBytes is 413 and not stored', async () => {
    const { agent, admin } = await newPool();
    const resources = Array.from({ length: 40 }, (_, i) => `resource-${i}`);
    expectRefused(await poll(agent, 'big', { resources }), 413, 'quotas.agentInfoBytes');
    expect((await admin.get('/v1/agents')).body).toEqual([]);
  });

  it('queued jobs per pool: the job beyond the limit gets 429, a batch that does not fit stores nothing', async () => {
    const { agent, admin } = await newPool();
    for (let i = 0; i < 4; i++) await admin.enqueue({ type: 'ping' });
    expectRefused(await admin.post('/v1/jobs/batch', { jobs: [{ type: 'ping' }, { type: 'ping' }] }), 429, 'quotas.queuedJobsPerPool');
    expect((await admin.get('/v1/jobs?status=queued')).body.jobs).toHaveLength(4);
    await admin.enqueue({ type: 'ping' });
    expectRefused(await admin.post('/v1/jobs', { type: 'ping' }), 429, 'quotas.queuedJobsPerPool');
    expect((await admin.get('/v1/jobs?status=queued')).body.jobs).toHaveLength(5);
    // A leased job leaves the queue: room for one more.
    expect((await poll(agent, 'a1')).body.jobs).toHaveLength(1);
    await admin.enqueue({ type: 'ping' });
    expectRefused(await admin.post('/v1/jobs', { type: 'ping' }), 429, 'quotas.queuedJobsPerPool');
    expect(sample(await scrape(t), 'outpost_proxy_quota_refusals_total', { quota: 'queued_jobs_per_pool' })).toBeGreaterThanOrEqual(3);
  });

  it('output bytes per job and per pool: the page beyond is 413 and not stored', async () => {
    const { agent, admin } = await newPool();
    const [j1, j2] = [await admin.enqueue({ type: 'listAccounts', resource: 'db' }), await admin.enqueue({ type: 'listAccounts', resource: 'db' })];
    const leased = (await agent.post('/v1/agent/lease', { agentId: 'a1', hostname: 'h', version: '1', resources: ['db'], max: 2, waitMs: 0 })).body.jobs;
    const token = (id: string) => leased.find((j: { id: string }) => j.id === id).leaseToken as string;
    const page = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `rec-${i}`, v: 'x'.repeat(30) }));
    const out = (id: string, seq: number, records: unknown[]) => agent.post(`/v1/agent/jobs/${id}/output`, { leaseToken: token(id), seq, records });
    // 12 records are 627 bytes, 2 are 105, 5 are 261: two pages of 12 exceed the job's 1 000.
    expect((await out(j1, 0, page(12))).status).toBe(200);
    expectRefused(await out(j1, 1, page(12)), 413, 'quotas.outputBytesPerJob');
    expect((await out(j1, 1, page(2))).status).toBe(200);
    // The pool holds 732 of 1 500; 627 more fit, then 261 (within the job's 1 000) do not.
    expect((await out(j2, 0, page(12))).status).toBe(200);
    expectRefused(await out(j2, 1, page(5)), 413, 'quotas.outputBytesPerPool');
    const view = (await admin.get(`/v1/jobs/${j1}`)).body;
    expect(view.outputRecords).toBe(14);
    const lines = (await admin.get(`/v1/jobs/${j1}/output`)).text.trim().split('\n');
    expect(lines).toHaveLength(14);
    expect((await admin.get(`/v1/jobs/${j2}`)).body.outputRecords).toBe(12);
    const text = await scrape(t);
    expect(sample(text, 'outpost_proxy_quota_refusals_total', { quota: 'output_bytes_per_job' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'outpost_proxy_quota_refusals_total', { quota: 'output_bytes_per_pool' })).toBeGreaterThanOrEqual(1);
  });
});

/** Quotas of one replica's memory and connections (no store involved): SQLite only. */
describe('per-replica quotas', () => {
  const tmp = tempDir();
  let t: TestProxy;
  beforeAll(async () => {
    t = await startTestProxy({
      store: 'sqlite:' + join(tmp.dir, 'proxy.db'),
      overrides: { quotas: { parkedPollsPerPool: 2, requestsPerToken: 8, requestWindowMs: 60_000 }, requestTimeoutMs: 1000 },
    });
  });
  afterAll(async () => {
    await t?.stop();
    tmp.cleanup();
  });

  it('parked polls per pool: the poll beyond the limit gets 429 at once; the parked ones stay', async () => {
    const ac = new AbortController();
    const parked = [1, 2].map((i) => t.agent.lease({ agentId: `p${i}`, waitMs: 20_000 }, ac.signal).catch(() => 'aborted'));
    await waitFor(async () => sample(await scrape(t), 'outpost_proxy_parked_polls') === 2);
    const third = await t.agent.post('/v1/agent/lease', { agentId: 'p3', hostname: 'h', version: '1', resources: [], max: 1, waitMs: 20_000 });
    expectRefused(third, 429, 'quotas.parkedPollsPerPool');
    // A job enqueued now still wakes a parked poll.
    const id = await t.admin.enqueue({ type: 'ping' });
    const woken = await Promise.race(parked);
    expect(woken).toEqual([expect.objectContaining({ id })]);
    ac.abort();
    await Promise.all(parked);
    expect(sample(await scrape(t), 'outpost_proxy_quota_refusals_total', { quota: 'parked_polls_per_pool' })).toBe(1);
  });

  it('request rate per token: the request beyond the window’s budget gets 429 before its body is read; other tokens and /healthz are not affected', async () => {
    const pool = 'rate';
    const admin = new Api(t.proxy.url, await t.proxy.createToken({ pool, admin: true }));
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push((await admin.get('/v1/jobs')).status);
    expect(statuses).toEqual(new Array(8).fill(200));
    const refused = await admin.post('/v1/jobs', { type: 'ping' });
    expectRefused(refused, 429, 'quotas.requestsPerToken');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(1);
    // Not stored: the request was refused before its body was parsed.
    expect((await t.admin.as(TEST_ADMIN_TOKEN).get(`/v1/jobs?pool=${pool}`)).body.jobs).toEqual([]);
    expect((await t.admin.get('/v1/jobs')).status).toBe(200);
    const health = await fetch(`${t.proxy.url}/healthz`);
    expect(health.status).toBe(200);
    expect(sample(await scrape(t), 'outpost_proxy_quota_refusals_total', { quota: 'requests_per_token' })).toBe(1);
  });

  it('a client that sends its request too slowly is dropped (requestTimeoutMs)', async () => {
    const url = new URL(t.proxy.url);
    const sock = connect(Number(url.port), url.hostname);
    await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
    let answer = '';
    sock.on('data', (d) => (answer += String(d)));
    const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
    // Headers and part of the body, then nothing: the proxy must not wait for the rest.
    sock.write(`POST /v1/jobs HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${t.admin.token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"type":`);
    await closed;
    expect(answer).toMatch(/^HTTP\/1.1 408/);
  });

  it('has sane defaults, each set by the environment', () => {
    const defaults = loadProxyConfig({ env: {} });
    expect(defaults.quotas).toEqual({
      agentsPerPool: 1000, parkedPollsPerPool: 1000, outputBytesPerJob: 1024 ** 3, outputBytesPerPool: 8 * 1024 ** 3,
      queuedJobsPerPool: 100_000, requestsPerToken: 3000, requestWindowMs: 1000, agentInfoBytes: 8192,
    });
    expect(defaults.retention).toEqual({ finishedJobsMs: 7 * 86_400_000, offlineAgentsMs: 7 * 86_400_000, sweepIntervalMs: 10_000, batchSize: 1000 });
    expect(defaults).toMatchObject({ queueTimeoutMs: 86_400_000, requestTimeoutMs: 30_000, acceptUnknownTypes: false });
    const cfg = loadProxyConfig({
      env: {
        PROXY_QUOTA_AGENTS_PER_POOL: '7', PROXY_QUOTA_PARKED_POLLS_PER_POOL: '8', PROXY_QUOTA_OUTPUT_BYTES_PER_JOB: '9', PROXY_QUOTA_OUTPUT_BYTES_PER_POOL: '10',
        PROXY_QUOTA_QUEUED_JOBS_PER_POOL: '11', PROXY_QUOTA_REQUESTS_PER_TOKEN: '12', PROXY_QUOTA_REQUEST_WINDOW_MS: '13', PROXY_QUOTA_AGENT_INFO_BYTES: '14',
        PROXY_RETENTION_FINISHED_JOBS_MS: '15', PROXY_RETENTION_OFFLINE_AGENTS_MS: '16', PROXY_RETENTION_SWEEP_INTERVAL_MS: '17', PROXY_RETENTION_BATCH_SIZE: '18',
        PROXY_QUEUE_TIMEOUT_MS: '19', PROXY_REQUEST_TIMEOUT_MS: '20', PROXY_ACCEPT_UNKNOWN_TYPES: 'true',
      },
    });
    expect(cfg.quotas).toEqual({
      agentsPerPool: 7, parkedPollsPerPool: 8, outputBytesPerJob: 9, outputBytesPerPool: 10,
      queuedJobsPerPool: 11, requestsPerToken: 12, requestWindowMs: 13, agentInfoBytes: 14,
    });
    expect(cfg.retention).toEqual({ finishedJobsMs: 15, offlineAgentsMs: 16, sweepIntervalMs: 17, batchSize: 18 });
    expect(cfg).toMatchObject({ queueTimeoutMs: 19, requestTimeoutMs: 20, acceptUnknownTypes: true });
    expect(() => loadProxyConfig({ env: { PROXY_QUOTA_AGENTS_PER_POOL: '0' } })).toThrow('quotas.agentsPerPool');
  });
});
