import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import got from 'got';
import { stopAgents, startAgent, testAgentConfig } from '../agent/harness.js';
import { AGENT_SUITE_PROXY, startTestProxy, type TestProxy } from '../fixtures/proxy-server.js';
import { sample } from '../fixtures/metrics.js';
import { sleepUntil } from '../fixtures/net.js';

let proxy: TestProxy;
beforeAll(async () => {
  proxy = await startTestProxy({ ...AGENT_SUITE_PROXY, leaseTtlMs: 1000, reaperIntervalMs: 100 });
});
afterAll(async () => {
  await stopAgents();
  await proxy.stop();
});

describe('integration-proxy /metrics', () => {
  it('reports queue depth, parked polls, agents online, expiries and requests as they change', async () => {
    // Pool labels are shown only to a token allowed to see the pool (anonymous scrapes get totals).
    const scrape = async () => (await got(`${proxy.url}/metrics`, { headers: { authorization: `Bearer ${proxy.adminToken}` } })).body;
    const ids = await proxy.enqueueMany([{ type: 'ping' }, { type: 'ping' }, { type: 'ping' }]);
    let text = await scrape();
    expect(sample(text, 'outpost_proxy_queue_depth', { pool: 'p1', status: 'queued' })).toBe(3);
    expect(sample(text, 'outpost_proxy_parked_polls')).toBe(0);
    expect(text).toContain('process_resident_memory_bytes');

    // A lease taken by hand and never renewed expires: the reaper counts it.
    const lease = await got.post(`${proxy.url}/v1/agent/lease`, {
      headers: { authorization: `Bearer ${proxy.agentToken}` },
      json: { agentId: 'manual', hostname: 'h', version: '0', resources: [], max: 1, waitMs: 0 },
      responseType: 'json',
    });
    expect((lease.body as { jobs: unknown[] }).jobs).toHaveLength(1);
    // Expiry is the reaper's (TTL 1 s, every 100 ms): wait for its counter, not for a fixed time.
    await sleepUntil(async () => sample((text = await scrape()), 'outpost_proxy_lease_expiries_total') >= 1, { what: 'a lease expiry counted' });
    expect(sample(text, 'outpost_proxy_lease_expiries_total')).toBe(1);

    const agent = await startAgent(testAgentConfig(proxy, { proxy: { waitMs: 5000 } as never }));
    await Promise.all(ids.map((id) => proxy.done(id)));
    // The agent's next poll parks once its results are in.
    await sleepUntil(async () => sample((text = await scrape()), 'outpost_proxy_parked_polls') === 1, { what: "the agent's next poll parked" });
    expect(sample(text, 'outpost_proxy_queue_depth', { pool: 'p1' })).toBe(0);
    expect(sample(text, 'outpost_proxy_parked_polls')).toBe(1);
    expect(sample(text, 'outpost_proxy_agents_online', { pool: 'p1' })).toBe(2);
    expect(sample(text, 'outpost_proxy_http_requests_total', { route: '/v1/agent/results', status: '200' })).toBeGreaterThanOrEqual(1);
    expect(text).not.toContain(proxy.agentToken);
    expect(agent.state).toBe('running');
  });
});
