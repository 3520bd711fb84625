import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import got from 'got';
import { startAgent, stopAgents, testAgentConfig } from './harness.js';
import { AGENT_SUITE_PROXY, startTestProxy, type TestProxy } from '../fixtures/proxy-server.js';
import { sample } from '../fixtures/metrics.js';
import { sleepUntil } from '../fixtures/net.js';

let proxy: TestProxy;
beforeAll(async () => {
  // A short TTL: the agent hears of the slow job's cancel on its next heartbeat (TTL/3), ~1 s instead of 10 s.
  proxy = await startTestProxy({ ...AGENT_SUITE_PROXY, leaseTtlMs: 3_000 });
});
afterAll(async () => {
  await stopAgents();
  await proxy.stop();
});


describe('agent /metrics', () => {
  it('serves Prometheus text whose counters move as jobs complete', async () => {
    const agent = await startAgent(testAgentConfig(proxy, { concurrency: 4 }));
    const scrape = async () => {
      const res = await got(`http://127.0.0.1:${agent.healthPort}/metrics`);
      expect(res.headers['content-type']).toMatch(/^text\/plain/);
      return res.body;
    };
    const before = await scrape();
    expect(before).toContain('# TYPE outpost_agent_leases_total counter');
    expect(before).toContain('process_resident_memory_bytes');
    expect(sample(before, 'outpost_agent_leases_total')).toBe(0);

    // The slow job runs until it is cancelled below, so "in flight" is 1 however loaded the machine is.
    const slow = await proxy.enqueue({ type: 'ping', payload: { delayMs: 600_000 } });
    const fast = await Promise.all([1, 2, 3].map(() => proxy.enqueue({ type: 'ping' })));
    const bad = await proxy.enqueue({ type: 'noSuchType' });
    await Promise.all([...fast, bad].map((id) => proxy.done(id)));
    const during = await scrape();
    expect(sample(during, 'outpost_agent_jobs_in_flight')).toBe(1);
    expect(sample(during, 'outpost_agent_job_duration_seconds_count', { type: 'ping', outcome: 'succeeded' })).toBe(3);
    expect(sample(during, 'outpost_agent_job_duration_seconds_count', { type: 'noSuchType', outcome: 'failed' })).toBe(1);

    expect((await proxy.root.post(`/v1/jobs/${slow}/cancel`)).status).toBe(200);
    expect((await proxy.done(slow)).status).toBe('cancelled');
    await sleepUntil(async () => sample(await scrape(), 'outpost_agent_jobs_in_flight') === 0, { timeoutMs: 10_000, what: 'the cancelled job to leave the agent' });
    const after = await scrape();
    expect(sample(after, 'outpost_agent_leases_total')).toBe(5);
    expect(sample(after, 'outpost_agent_jobs_in_flight')).toBe(0);
    expect(sample(after, 'outpost_agent_job_duration_seconds_count', { type: 'ping', outcome: 'succeeded' })).toBe(3);
    expect(sample(after, 'outpost_agent_polls_total', { outcome: 'ok' })).toBeGreaterThanOrEqual(2);
    expect(after).toContain(`agent_id="${agent.agentId}"`);
  });
});
