import { afterAll, afterEach, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeClock } from '../fixtures/fake-clock.js';
import { sample } from '../fixtures/metrics.js';
import { freePort, sleepUntil, waitFor } from '../fixtures/net.js';
import { fakeConnectorKinds, type FakeState } from './fake-connector.js';
import { captureLogger, startAgent, stopAgents, testAgentConfig } from './harness.js';
import { AGENT_SUITE_PROXY, startTestProxy, type TestProxy, type TestProxyOptions } from '../fixtures/proxy-server.js';

const proxies: TestProxy[] = [];
async function proxyWith(opts: TestProxyOptions): Promise<TestProxy> {
  const p = await startTestProxy({ ...AGENT_SUITE_PROXY, ...opts });
  proxies.push(p);
  return p;
}
afterEach(() => stopAgents());
const dirs: string[] = [];
afterAll(async () => {
  await stopAgents();
  await Promise.all(proxies.map((p) => p.stop()));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function fake() {
  const state: FakeState = { aborted: new Map(), started: new Set(), passwords: new Map() };
  return { state, kinds: fakeConnectorKinds(state), resources: { r1: { kind: 'fake' } } };
}
const slow = { type: 'grant', resource: 'r1', payload: { accountId: 'slow', entitlementId: 'g' } };

describe('leases: heartbeat, lost, cancelled, self-fencing', () => {
  it('heartbeats keep a long job alive past several TTLs', async () => {
    // One FakeClock for the agent (the ping's 5 s, the heartbeat period) and the proxy (lease expiry,
    // reaper): the proxy sees 5 s pass, and would expire an unrenewed lease, in no wall time.
    const clock = new FakeClock(Date.now());
    const TTL = 1500;
    const proxy = await proxyWith({ leaseTtlMs: TTL, reaperIntervalMs: 200, clock });
    const agent = await startAgent(testAgentConfig(proxy), { clock });
    const id = await proxy.enqueue({ type: 'ping', payload: { delayMs: 5000 } });
    await sleepUntil(() => agent.stats().running === 1, { what: 'the ping running' });
    // Renewals the proxy answered, from the agent's own /metrics.
    const answered = async () =>
      sample(await (await fetch(`http://127.0.0.1:${agent.healthPort}/metrics`)).text(), 'outpost_agent_heartbeats_total', { status: 'ok' });
    // Time moves in 100 ms steps; a heartbeat that fires is answered before time moves on (as on a real clock,
    // where a loopback round trip is far shorter than a period of TTL/3 ± 10 %).
    for (let movedMs = 0; agent.stats().running === 1; movedMs += 100) {
      expect(movedMs).toBeLessThan(10_000);
      const sent = agent.stats().heartbeats;
      await clock.advance(100);
      if (agent.stats().heartbeats > sent) await sleepUntil(async () => (await answered()) >= agent.stats().heartbeats, { what: `heartbeat ${sent + 1} answered` });
    }
    // The result goes in; `done` would long-poll on the proxy's (stopped) clock, so poll and move time instead.
    let job = await proxy.job(id);
    await sleepUntil(async () => {
      await clock.advance(50);
      return (job = await proxy.job(id)).status !== 'leased';
    }, { what: () => `the job ended (last status ${job.status})` });
    expect(job).toMatchObject({ status: 'succeeded', attempt: 1, agentId: agent.agentId });
    // ONE heartbeat call per period for all leases: at TTL/3 that is about 10 over 5 s.
    expect(agent.stats().heartbeats).toBeGreaterThanOrEqual(6);
  });

  it('aborts the job when the proxy says cancelled, and keeps running', async () => {
    const proxy = await proxyWith({ leaseTtlMs: 1500, reaperIntervalMs: 200 });
    const { state, kinds, resources } = fake();
    const agent = await startAgent(testAgentConfig(proxy, { resources }), { connectorKinds: kinds });
    const id = await proxy.enqueue(slow);
    await waitFor(() => state.started.has('slow'));
    expect((await proxy.admin.post(`/v1/jobs/${id}/cancel`)).status).toBe(200);
    await waitFor(() => state.aborted.has('slow'));
    expect(state.aborted.get('slow')).toBe('cancelled');
    expect(await proxy.job(id)).toMatchObject({ status: 'cancelled' });
    await waitFor(() => agent.stats().held === 0);
    const ping = await proxy.enqueue({ type: 'ping' });
    expect(await proxy.done(ping)).toMatchObject({ status: 'succeeded' });
  });

  it('aborts the job when the proxy says lost (its lease expired there)', async () => {
    // The proxy runs on a FakeClock: moving it past the TTL expires the lease while the agent still renews in real time.
    const proxyClock = new FakeClock(Date.now());
    const proxy = await proxyWith({ leaseTtlMs: 1500, reaperIntervalMs: 2000, clock: proxyClock });
    const { state, kinds, resources } = fake();
    const agent = await startAgent(testAgentConfig(proxy, { resources, concurrency: 1 }), { connectorKinds: kinds });
    const id = await proxy.enqueue({ ...slow, maxAttempts: 1 });
    await waitFor(() => state.started.has('slow'));
    await proxyClock.advance(2000);
    await waitFor(() => state.aborted.has('slow'));
    expect(state.aborted.get('slow')).toBe('lease_lost');
    await waitFor(() => agent.stats().held === 0);
    expect((await proxy.job(id)).status).not.toBe('succeeded');
  });

  it("aborts a job that outlives its timeoutMs and reports a retryable timeout", async () => {
    const proxy = await proxyWith({ leaseTtlMs: 1500, reaperIntervalMs: 200 });
    const { state, kinds, resources } = fake();
    await startAgent(testAgentConfig(proxy, { resources }), { connectorKinds: kinds });
    const id = await proxy.enqueue({ ...slow, timeoutMs: 300, maxAttempts: 1 });
    const job = await proxy.done(id);
    expect(state.aborted.get('slow')).toBe('timeout');
    expect(job).toMatchObject({ status: 'failed', error: { code: 'timeout', retryable: true } });
  });

  it('keeps a result through a proxy restart and delivers it while the lease is still ours', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'outpost-agent-restart-'));
    dirs.push(dir);
    const port = await freePort();
    const first = await startTestProxy({ ...AGENT_SUITE_PROXY, leaseTtlMs: 8000, reaperIntervalMs: 200, port, dir });
    const agent = await startAgent(testAgentConfig(first));
    const id = await first.enqueue({ type: 'ping', payload: { delayMs: 300 } });
    await waitFor(() => agent.stats().running === 1);
    await first.stop();
    // The ping finishes while the proxy is away: its result waits (backoff), its lease stays held.
    await waitFor(() => agent.stats().running === 0 && agent.stats().held === 1);
    const second = await proxyWith({ leaseTtlMs: 8000, reaperIntervalMs: 200, port, dir });
    expect(await second.done(id)).toMatchObject({ status: 'succeeded', attempt: 1, agentId: agent.agentId });
    await waitFor(() => agent.stats().held === 0);
  });

  it('splits an output page the proxy finds too large (413), keeping the records in order', async () => {
    const proxy = await proxyWith({ bodyLimitBytes: 900 });
    const { kinds } = fake();
    const agent = await startAgent(testAgentConfig(proxy, { resources: { r1: { kind: 'fake', pages: 2 } } }), { connectorKinds: kinds });
    const id = await proxy.enqueue({ type: 'listAccounts', resource: 'r1', payload: { pageSize: 12 } });
    expect(await proxy.done(id)).toMatchObject({ status: 'succeeded', result: { records: 24 }, outputRecords: 24 });
    const ndjson = await proxy.admin.get(`/v1/jobs/${id}/output`);
    expect(ndjson.text.trim().split('\n').map((l) => (JSON.parse(l) as { id: string }).id)).toEqual(Array.from({ length: 24 }, (_, i) => `u${i}`));
    // Two pages of 12 did not fit: each was refused once and sent as smaller pages.
    expect(agent.stats().requests['/agent/jobs/:id/output']).toBeGreaterThan(4);
  });

  it('self-fences at send time + heldMs + TTL − 2 s when the proxy becomes unreachable', async () => {
    const proxy = await proxyWith({ leaseTtlMs: 8000, reaperIntervalMs: 200 });
    const { state, kinds, resources } = fake();
    const clock = new FakeClock();
    await startAgent(testAgentConfig(proxy, { resources }), { connectorKinds: kinds, clock });
    await proxy.enqueue(slow);
    await waitFor(() => state.started.has('slow'));
    await proxy.stop();
    await clock.advance(5999);
    expect(state.aborted.has('slow')).toBe(false);
    await clock.advance(1);
    await waitFor(() => state.aborted.has('slow'));
    expect(state.aborted.get('slow')).toBe('lease_lost');
  });

  it('drain: retries the release while the proxy is briefly away, so the job spends no attempt', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'outpost-agent-release-'));
    dirs.push(dir);
    const port = await freePort();
    const first = await startTestProxy({ ...AGENT_SUITE_PROXY, leaseTtlMs: 8000, reaperIntervalMs: 200, port, dir });
    const { state, kinds, resources } = fake();
    const cap = captureLogger('info');
    const agent = await startAgent(testAgentConfig(first, { resources, shutdownGraceMs: 200 }), { connectorKinds: kinds, log: cap.log });
    const id = await first.enqueue(slow);
    await waitFor(() => state.started.has('slow'));
    await first.stop();
    const stopped = agent.stop();
    // The grace ends, the job is stopped, and the release finds the proxy away: it is retried with backoff.
    await waitFor(() => cap.lines().some((l) => l.message === 'release failed'));
    const second = await proxyWith({ leaseTtlMs: 8000, reaperIntervalMs: 200, port, dir });
    await stopped;
    expect(state.aborted.get('slow')).toBe('aborted');
    expect(cap.lines().some((l) => l.message === 'released unfinished jobs' && l.released === 1)).toBe(true);
    // Given back: queued with no attempt spent (the next lease is attempt 1 again).
    expect(await second.job(id)).toMatchObject({ status: 'queued', attempt: 0 });
    expect((await second.admin.post(`/v1/jobs/${id}/cancel`)).status).toBe(200);
  });
});
