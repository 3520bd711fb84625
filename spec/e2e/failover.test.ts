import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { AgentList, JobView } from '../../lib/protocol/schemas.js';
import { waitFor } from '../fixtures/net.js';
import { buildDist, startAgentProcess, startProxyProcess, stopAll, type Proc, type ProxyProc } from '../fixtures/processes.js';

/**
 * Real processes from dist/: one integration-proxy (SQLite, lease TTL
 * 1.5 s, reaper 200 ms) and two agents of one pool.
 */
let proxy: ProxyProc;
const agents = new Map<string, Proc>();

function agentEnv(id: string): NodeJS.ProcessEnv {
  return {
    AGENT_PROXY_URL: proxy.url,
    AGENT_TOKEN: proxy.agentToken,
    AGENT_ID: id,
    AGENT_CONCURRENCY: '16',
    AGENT_WAIT_MS: '5000',
    AGENT_SHUTDOWN_GRACE_MS: '300',
    AGENT_LOG_LEVEL: 'info',
  };
}

async function startAgent(id: string): Promise<Proc> {
  const p = startAgentProcess(id, agentEnv(id));
  agents.set(id, p);
  await p.waitForLine(/"agent started"/);
  return p;
}

async function done(id: string, timeoutMs = 20_000): Promise<JobView> {
  let view: JobView | undefined;
  await waitFor(async () => {
    view = await proxy.call<JobView>('GET', `/v1/jobs/${id}?waitMs=2000`);
    return ['succeeded', 'failed', 'cancelled'].includes(view.status);
  }, timeoutMs, 0);
  return view!;
}

async function leased(id: string): Promise<JobView> {
  let view: JobView | undefined;
  await waitFor(async () => {
    view = await proxy.call<JobView>('GET', `/v1/jobs/${id}`);
    return view.status === 'leased';
  }, 10_000, 20);
  return view!;
}

const enqueue = async (payload: unknown, extra: Record<string, unknown> = {}) =>
  (await proxy.call<{ id: string }>('POST', '/v1/jobs', { pool: proxy.pool, type: 'ping', payload, ...extra })).id;

beforeAll(async () => {
  buildDist();
  proxy = await startProxyProcess({ leaseTtlMs: 1500, reaperIntervalMs: 200 });
  await Promise.all([startAgent('agent-a'), startAgent('agent-b')]);
}, 90_000);

afterAll(async () => {
  await stopAll();
  await proxy?.stop();
});

describe('two agents and one proxy, as real processes', () => {
  it('both agents show online in GET /v1/agents', async () => {
    await waitFor(async () => {
      const list = await proxy.call<AgentList>('GET', `/v1/agents?pool=${proxy.pool}`);
      return ['agent-a', 'agent-b'].every((id) => list.some((a) => a.agentId === id && a.status === 'online'));
    });
  });

  it('kill -9 during a long ping: the job completes on the other agent once the lease expires', async () => {
    const id = await enqueue({ delayMs: 3000 });
    const first = await leased(id);
    const victim = first.agentId!;
    const survivor = victim === 'agent-a' ? 'agent-b' : 'agent-a';
    await agents.get(victim)!.stop('SIGKILL');
    const view = await done(id);
    expect(view).toMatchObject({ status: 'succeeded', attempt: 2, agentId: survivor, result: { ok: true, agentId: survivor } });
    await startAgent(victim);
  }, 40_000);

  it('SIGTERM: the job is released and restarted on the other agent at once, attempt unchanged', async () => {
    const id = await enqueue({ delayMs: 2500 });
    const first = await leased(id);
    const leaving = first.agentId!;
    const staying = leaving === 'agent-a' ? 'agent-b' : 'agent-a';
    const proc = agents.get(leaving)!;
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    expect(proc.output()).toContain('released unfinished jobs');
    const view = await done(id);
    expect(view).toMatchObject({ status: 'succeeded', attempt: first.attempt, agentId: staying });
    await startAgent(leaving);
  }, 40_000);

  it('1 000 jobs through two agents all succeed exactly once when nothing fails', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 1000; i += 500) {
      const jobs = Array.from({ length: 500 }, (_, k) => ({ pool: proxy.pool, type: 'ping', payload: { delayMs: (i + k) % 7 } }));
      const res = await proxy.call<{ jobs: Array<{ id: string }> }>('POST', '/v1/jobs/batch', { jobs });
      ids.push(...res.jobs.map((j) => j.id));
    }
    const views: JobView[] = [];
    for (const id of ids) views.push(await done(id, 60_000));
    expect(views.filter((v) => v.status === 'succeeded')).toHaveLength(1000);
    expect(views.filter((v) => v.attempt !== 1)).toEqual([]);
    const byAgent = new Map<string, number>();
    for (const v of views) byAgent.set(v.agentId!, (byAgent.get(v.agentId!) ?? 0) + 1);
    expect([...byAgent.keys()].sort()).toEqual(['agent-a', 'agent-b']);
  }, 90_000);
});

describe('failover at the lease TTL (lease TTL 3 s, backstop reaper 60 s)', () => {
  it('kill -9 of an agent mid-job: the job is leased again within TTL + 2 s of the kill, by the deadline timer', async () => {
    const TTL = 3000;
    const own = await startProxyProcess({ leaseTtlMs: TTL, reaperIntervalMs: 60_000 });
    const procs: Proc[] = [];
    try {
      const env = (id: string): NodeJS.ProcessEnv => ({ ...agentEnv(id), AGENT_PROXY_URL: own.url, AGENT_TOKEN: own.agentToken });
      for (const id of ['ttl-a', 'ttl-b']) {
        const p = startAgentProcess(id, env(id));
        procs.push(p);
        await p.waitForLine(/"agent started"/);
      }
      const { id } = await own.call<{ id: string }>('POST', '/v1/jobs', { pool: own.pool, type: 'ping', payload: { delayMs: 20_000 } });
      let first: JobView | undefined;
      await waitFor(async () => {
        first = await own.call<JobView>('GET', `/v1/jobs/${id}`);
        return first.status === 'leased';
      }, 10_000, 20);
      const victim = procs.find((p) => p.name.includes(first!.agentId!)) ?? procs[0]!;
      const killedAtMs = Date.now();
      await victim.stop('SIGKILL');
      let view: JobView | undefined;
      await waitFor(async () => {
        view = await own.call<JobView>('GET', `/v1/jobs/${id}`);
        return (view.attempts?.length ?? 0) >= 2;
      }, 20_000, 50);
      const [a1, a2] = view!.attempts!;
      expect(a1).toMatchObject({ attempt: 1, outcome: 'expired', agentId: first!.agentId });
      expect(a2!.agentId).not.toBe(first!.agentId);
      // The proxy's own records: expiry → next lease (the survivor's parked poll is woken at once).
      const expiryToLeaseMs = Date.parse(a2!.startedAt!) - Date.parse(a1!.endedAt!);
      // Kill → leased again: the lease was last renewed before the kill, so this is at most TTL + the expiry's latency.
      const killToLeaseMs = Date.parse(a2!.startedAt!) - killedAtMs;
      process.stdout.write(`failover: kill → re-lease ${killToLeaseMs} ms, expiry → re-lease ${expiryToLeaseMs} ms (TTL ${TTL} ms)\n`);
      expect(expiryToLeaseMs).toBeLessThan(1000);
      expect(killToLeaseMs).toBeLessThan(TTL + 2000);
    } finally {
      for (const p of procs) await p.stop('SIGKILL').catch(() => undefined);
      await own.stop();
    }
  }, 60_000);
});
