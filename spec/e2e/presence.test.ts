import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { AgentView, JobView } from '../../lib/protocol/schemas.js';
import { waitFor } from '../fixtures/net.js';
import { buildDist, startAgentProcess, startProxyProcess, stopAll, type Proc, type ProxyProc } from '../fixtures/processes.js';

/**
 * Presence and versions with real processes: a real proxy, real agents.
 * SIGTERM → `draining` then `offline` in GET /v1/agents within 1 s; kill -9 →
 * `stale` within the poll hold + 5 s; an agent below the proxy's minimum
 * version gets 426, logs it, and keeps running (its /healthz answers).
 */
let proxy: ProxyProc;

function agent(id: string, env: NodeJS.ProcessEnv = {}, p: ProxyProc = proxy): Proc {
  return startAgentProcess(id, {
    AGENT_PROXY_URL: p.url, AGENT_TOKEN: p.agentToken, AGENT_ID: id, AGENT_WAIT_MS: '1000', AGENT_LOG_LEVEL: 'info', ...env,
  });
}
const agents = async (p: ProxyProc = proxy) => (await p.call<{ agents: AgentView[] }>('GET', '/v1/agents?limit=100')).agents;
const statusOf = async (id: string, p: ProxyProc = proxy) => (await agents(p)).find((a) => a.agentId === id)?.status;

/** Polls GET /v1/agents every 10 ms until `id` has `status`; returns when (ms, performance clock). */
async function when(id: string, status: string, timeoutMs: number, p: ProxyProc = proxy): Promise<number> {
  await waitFor(async () => (await statusOf(id, p)) === status, timeoutMs, 10);
  return performance.now();
}

beforeAll(async () => {
  buildDist();
  proxy = await startProxyProcess({ leaseTtlMs: 30_000, env: { PROXY_AGENT_LATEST_VERSION: '0.1.0', PROXY_AGENT_MIN_VERSION: '0.1.0' } });
}, 90_000);

afterAll(async () => {
  await stopAll();
});

describe('presence of real agent processes', () => {
  it('SIGTERM: draining within 1 s while its job finishes, offline within 1 s of its exit', async () => {
    const a = agent('term-1', { AGENT_SHUTDOWN_GRACE_MS: '10000' });
    await when('term-1', 'online', 15_000);
    const id = (await proxy.call<{ id: string }>('POST', '/v1/jobs', { pool: proxy.pool, type: 'ping', payload: { delayMs: 2500 } })).id;
    await waitFor(async () => (await proxy.call<JobView>('GET', `/v1/jobs/${id}`)).status === 'leased', 10_000, 20);
    const t0 = performance.now();
    a.child.kill('SIGTERM');
    const drainingAt = await when('term-1', 'draining', 5000);
    expect(drainingAt - t0).toBeLessThan(1000);
    const exited = a.exited.then(() => performance.now());
    const offlineAt = await when('term-1', 'offline', 15_000);
    expect(offlineAt - (await exited)).toBeLessThan(1000);
    // The job was not cut short by the goodbye: it finished during the grace.
    expect((await proxy.call<JobView>('GET', `/v1/jobs/${id}`)).status).toBe('succeeded');
    const bye = (await proxy.call<AgentView[]>('GET', '/v1/agents')).find((x) => x.agentId === 'term-1')!;
    expect(bye.inFlight).toBe(0);
  }, 60_000);

  it('kill -9: stale within the poll hold (1 s) + 5 s; an agent whose hold is longer than 5 s stays online', async () => {
    const victim = agent('kill-1');
    const patient = agent('hold-8s', { AGENT_WAIT_MS: '8000' });
    await when('kill-1', 'online', 15_000);
    await when('hold-8s', 'online', 15_000);
    const t0 = performance.now();
    victim.child.kill('SIGKILL');
    // Every 10 ms: the patient agent (held 8 s per poll, so silent for 8 s at a time) never turns stale.
    let patientWrong = '';
    const watch = setInterval(() => {
      void statusOf('hold-8s').then((s) => {
        if (s !== 'online') patientWrong ||= String(s);
      });
    }, 100);
    try {
      const staleAt = await when('kill-1', 'stale', 10_000);
      expect(staleAt - t0).toBeLessThan(1000 + 5000 + 300);
      await new Promise((r) => setTimeout(r, 10_000 - (performance.now() - t0)));
    } finally {
      clearInterval(watch);
    }
    expect(patientWrong).toBe('');
    await patient.stop();
  }, 60_000);

  it('an agent below the minimum version gets 426, says so once, keeps running (healthz 200), and shows as upgrade required', async () => {
    const strict = await startProxyProcess({ env: { PROXY_AGENT_MIN_VERSION: '0.2.0', PROXY_AGENT_LATEST_VERSION: '0.3.0' } });
    const old = agent('old-1', {}, strict);
    const line = await old.waitForLine(/upgrade_required|refuses this agent's version/, 15_000);
    expect(line).toMatch(/0\.1\.0/);
    expect(line).toMatch(/0\.3\.0 or newer/);
    const row = (await agents(strict)).find((x) => x.agentId === 'old-1')!;
    expect(row).toMatchObject({ status: 'online', outdated: true, upgradeRequired: true, version: '0.1.0' });
    const port = Number((await old.waitForLine(/agent started/)).match(/"healthPort":(\d+)/)![1]);
    await new Promise((r) => setTimeout(r, 1500));
    expect(old.child.exitCode).toBeNull();
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(/outpost_agent_build_info\{version="0\.1\.0"[^}]*\} 1/);
    // One error line, not one per poll.
    expect(old.jsonLines().filter((l) => /refuses this agent's version/.test(String(l.message)))).toHaveLength(1);
    await old.stop();
    await strict.stop();
  }, 60_000);

  it('an agent older than the latest version warns once, naming both versions and how to upgrade', async () => {
    const newer = await startProxyProcess({ env: { PROXY_AGENT_LATEST_VERSION: '0.4.0' } });
    const a = agent('warn-1', {}, newer);
    const line = await a.waitForLine(/names 0\.4\.0 as the latest/, 15_000);
    expect(line).toMatch(/version 0\.1\.0/);
    expect(line).toMatch(/restart the agent service/);
    await new Promise((r) => setTimeout(r, 2500));
    expect(a.jsonLines().filter((l) => /as the latest/.test(String(l.message)))).toHaveLength(1);
    expect((await agents(newer)).find((x) => x.agentId === 'warn-1')).toMatchObject({ outdated: true, upgradeRequired: false, status: 'online' });
    await a.stop();
    await newer.stop();
  }, 60_000);
});
