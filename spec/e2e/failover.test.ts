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
