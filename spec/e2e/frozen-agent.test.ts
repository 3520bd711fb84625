import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import got from 'got';
import type { JobView, LeaseResponse } from '../../lib/protocol/schemas.js';
import { waitFor } from '../fixtures/net.js';
import { buildDist, startAgentProcess, startProxyProcess, stopAll, type Proc, type ProxyProc } from '../fixtures/processes.js';
import { scratchPostgres, type ScratchDatabase } from '../fixtures/sql.js';

/**
 * A frozen agent must never start a job after the proxy expired its lease.
 * Real processes from dist/: one integration-proxy (SQLite, TTL 2 s, reaper
 * 200 ms) and agents whose one resource is a real PostgreSQL database; the
 * job (`sql.query` "record") inserts a row into a ledger table naming the
 * agent that ran it, so every side effect is counted.
 */
const PG_URL = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
let proxy: ProxyProc;
let db: ScratchDatabase;
let dir: string;
const agents = new Map<string, Proc>();

beforeAll(async () => {
  buildDist();
  dir = mkdtempSync(join(tmpdir(), 'outpost-e2e-frozen-'));
  db = await scratchPostgres(PG_URL);
  await db.admin.raw('create table ledger (id serial primary key, tag text not null, agent text not null)');
  proxy = await startProxyProcess({ leaseTtlMs: 2000, reaperIntervalMs: 200 });
}, 90_000);

afterAll(async () => {
  await stopAll();
  await proxy?.stop();
  await db?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** An agent whose `record` query writes its own name into the ledger. */
async function startAgent(id: string): Promise<Proc> {
  const config = {
    agentId: id,
    proxy: { url: proxy.url, token: proxy.agentToken, waitMs: 20_000 },
    concurrency: 1,
    shutdownGraceMs: 500,
    health: { host: '127.0.0.1', port: 0 },
    log: { level: 'info', format: 'json' },
    resources: {
      db: { kind: 'postgres', connection: { url: db.url }, queries: { record: `insert into ledger (tag, agent) values (:tag, '${id}') returning tag` } },
    },
  };
  writeFileSync(join(dir, `${id}.json`), JSON.stringify(config));
  const p = startAgentProcess(id, { AGENT_CONFIG: join(dir, `${id}.json`), AGENT_ID: id });
  agents.set(id, p);
  await p.waitForLine(/"agent started"/);
  return p;
}

async function parkedPolls(): Promise<number> {
  const text = await got(`${proxy.url}/metrics`, { headers: { authorization: `Bearer ${proxy.adminToken}` }, timeout: { request: 5000 } }).text();
  return Number(/^outpost_proxy_parked_polls(?:\{[^}]*\})? (\d+)/m.exec(text)?.[1] ?? 0);
}

const job = (id: string) => proxy.call<JobView>('GET', `/v1/jobs/${id}`);
async function until(id: string, ok: (v: JobView) => boolean, timeoutMs = 15_000): Promise<JobView> {
  let view: JobView | undefined;
  await waitFor(async () => ok((view = await job(id))), timeoutMs, 50);
  return view!;
}
const ledger = async (tag: string) => ((await db.admin.raw('select agent from ledger where tag = ? order by id', [tag])).rows as Array<{ agent: string }>).map((r) => r.agent);
const notStarted = (p: Proc, jobId: string) => p.jsonLines().some((l) => String(l.message).startsWith('job not started') && l.jobId === jobId);
/**
 * Waits until the agent has logged anything about the job (not started, or stopped, refused… in a broken build),
 * then up to 1 s more for its 'job not started' line: the agent writes `lease ended: fenced` first, and the
 * two lines can reach this process in separate reads (CI read the first alone once).
 */
async function settled(p: Proc, jobId: string): Promise<void> {
  await waitFor(() => p.jsonLines().some((l) => l.jobId === jobId), 15_000, 20);
  await waitFor(() => notStarted(p, jobId), 1000, 20).catch(() => undefined);
}
const enqueueRecord = async (tag: string, maxAttempts: number) =>
  (await proxy.call<{ id: string }>('POST', '/v1/jobs', { pool: proxy.pool, type: 'sql.query', resource: 'db', payload: { query: 'record', params: { tag } }, maxAttempts })).id;

describe('lease fencing from the send time, with real processes', () => {
  it('the proxy says how long it held the poll before it claimed (heldMs), within what the client measured', async () => {
    const api = got.extend({ prefixUrl: proxy.url, headers: { authorization: `Bearer ${proxy.agentToken}` }, timeout: { request: 30_000 } });
    const parkedBefore = await parkedPolls();
    const sentAt = performance.now();
    const answer = api.post('v1/agent/lease', { json: { agentId: 'probe', hostname: 'probe', version: 'test', resources: ['probe-only'], max: 1, waitMs: 10_000 } }).json<LeaseResponse>();
    await waitFor(async () => (await parkedPolls()) > parkedBefore, 10_000, 20);
    // The poll is parked: whatever happens next, the proxy held it at least this long before it could claim.
    await new Promise((r) => setTimeout(r, 1000));
    const { id } = await proxy.call<{ id: string }>('POST', '/v1/jobs', { pool: proxy.pool, type: 'listAccounts', resource: 'probe-only', payload: {} });
    const res = await answer;
    const roundTripMs = performance.now() - sentAt;
    expect(res.jobs.map((j) => j.id)).toEqual([id]);
    expect(Number.isInteger(res.heldMs)).toBe(true);
    expect(res.heldMs!).toBeGreaterThanOrEqual(1000);
    expect(res.heldMs!).toBeLessThanOrEqual(roundTripMs);
    await api.post('v1/agent/release', { json: { agentId: 'probe', leases: [{ jobId: id, leaseToken: res.jobs[0]!.leaseToken }] } });
    await proxy.call('POST', `/v1/jobs/${id}/cancel`);
  }, 30_000);

  it('SIGSTOP with a parked poll, expiry, SIGCONT: the frozen agent never starts the job (maxAttempts 1: no side effect at all)', async () => {
    const a = await startAgent('agent-a');
    await waitFor(async () => (await parkedPolls()) === 1, 10_000, 20);
    process.kill(a.pid, 'SIGSTOP');
    try {
      const id = await enqueueRecord('once', 1);
      // The proxy answers the frozen agent's parked poll: the job is leased to it, the answer sits in its socket.
      expect(await until(id, (v) => v.status !== 'queued')).toMatchObject({ status: 'leased', agentId: 'agent-a', attempt: 1 });
      // TTL + reaper: the proxy expires the lease; with no attempt left the job fails.
      expect(await until(id, (v) => v.status === 'failed')).toMatchObject({ status: 'failed', attempt: 1 });
      process.kill(a.pid, 'SIGCONT');
      await settled(a, id);
      expect(await ledger('once')).toEqual([]);
      expect(notStarted(a, id)).toBe(true);
      expect((await job(id)).status).toBe('failed');
    } finally {
      process.kill(a.pid, 'SIGCONT');
    }
    // It goes on working: the next job runs once.
    const next = await enqueueRecord('after', 1);
    expect(await until(next, (v) => v.status === 'succeeded')).toMatchObject({ agentId: 'agent-a', attempt: 1 });
    expect(await ledger('after')).toEqual(['agent-a']);
  }, 60_000);

  it('the same with another agent: the job runs exactly once, on the other agent, attempt 2', async () => {
    const frozen = agents.get('agent-a')!;
    await waitFor(async () => (await parkedPolls()) === 1, 25_000, 20);
    process.kill(frozen.pid, 'SIGSTOP');
    try {
      const id = await enqueueRecord('twice', 2);
      expect(await until(id, (v) => v.status !== 'queued')).toMatchObject({ status: 'leased', agentId: 'agent-a', attempt: 1 });
      const b = await startAgent('agent-b');
      expect(await until(id, (v) => v.status === 'succeeded')).toMatchObject({ agentId: 'agent-b', attempt: 2 });
      process.kill(frozen.pid, 'SIGCONT');
      await settled(frozen, id);
      expect(await ledger('twice')).toEqual(['agent-b']);
      expect(notStarted(frozen, id)).toBe(true);
      expect(b.output()).not.toContain('job not started');
    } finally {
      process.kill(frozen.pid, 'SIGCONT');
    }
  }, 60_000);
});
