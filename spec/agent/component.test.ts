import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { checkAgent } from '../../lib/agent/check.js';
import { silentLogger } from '../../lib/log/index.js';
import { sleepUntil, waitFor } from '../fixtures/net.js';
import { fakeConnectorKinds, type FakeState } from './fake-connector.js';
import { captureLogger, startAgent, stopAgents, testAgentConfig } from './harness.js';
import { AGENT_SUITE_PROXY, startTestProxy, type TestProxy } from '../fixtures/proxy-server.js';

const PASSWORD = 'fake-resource-password-91c2e7';
let proxy: TestProxy;
let state: FakeState;
let kinds: ReturnType<typeof fakeConnectorKinds>;
let passwordFile: string;

beforeAll(async () => {
  proxy = await startTestProxy(AGENT_SUITE_PROXY);
  passwordFile = join(mkdtempSync(join(tmpdir(), 'outpost-agent-pw-')), 'pw');
  writeFileSync(passwordFile, `${PASSWORD}\n`);
});
afterAll(async () => {
  await stopAgents();
  await proxy.stop();
  rmSync(dirname(passwordFile), { recursive: true, force: true });
});
afterEach(async () => {
  await stopAgents();
  state = { aborted: new Map(), started: new Set(), passwords: new Map() };
  kinds = fakeConnectorKinds(state);
});
state = { aborted: new Map(), started: new Set(), passwords: new Map() };
kinds = fakeConnectorKinds(state);

const resources = () => ({ r1: { kind: 'fake', passwordFile, pages: 4 } });

describe('agent against an in-process integration-proxy', () => {
  it('runs a ping and reports the agent that ran it', async () => {
    const agent = await startAgent(testAgentConfig(proxy));
    const id = await proxy.enqueue({ type: 'ping' });
    const job = await proxy.done(id);
    expect(job).toMatchObject({ status: 'succeeded', attempt: 1, result: { ok: true, agentId: agent.agentId } });
    expect(agent.state).toBe('running');
  });

  it('leases only the free slots', async () => {
    const ids = await proxy.enqueueMany(Array.from({ length: 5 }, () => ({ type: 'ping', payload: { delayMs: 1500 } })));
    const agent = await startAgent(testAgentConfig(proxy, { concurrency: 3 }));
    await waitFor(() => agent.stats().running === 3);
    const views = await Promise.all(ids.map((id) => proxy.job(id)));
    expect(views.filter((v) => v.status === 'leased')).toHaveLength(3);
    expect(views.filter((v) => v.status === 'queued')).toHaveLength(2);
    // Saturated: no poll is open while every slot is taken.
    const polls = agent.stats().polls;
    expect(agent.stats().running).toBe(3);
    const all = await Promise.all(ids.map((id) => proxy.done(id)));
    expect(all.every((v) => v.status === 'succeeded' && v.attempt === 1)).toBe(true);
    expect(agent.stats().polls).toBeGreaterThan(polls);
  });

  it('sends the results of jobs that finish together in one call', async () => {
    const ids = await proxy.enqueueMany(Array.from({ length: 6 }, () => ({ type: 'ping', payload: { delayMs: 300 } })));
    const agent = await startAgent(testAgentConfig(proxy, { concurrency: 8 }));
    await Promise.all(ids.map((id) => proxy.done(id)));
    // Six results in fewer calls than results: they were coalesced. The exact window (one call per
    // coalesceMs) is pinned on a FakeClock in reporter.test.ts; here real timers may straddle it.
    expect(agent.stats().resultCalls).toBeLessThan(ids.length);
    expect(agent.stats().requests['/agent/results']).toBe(agent.stats().resultCalls);
  });

  it('a busy agent carries finished results on its next lease request: fewer calls than jobs, each result once', async () => {
    const ids = await proxy.enqueueMany(Array.from({ length: 30 }, () => ({ type: 'ping', payload: { delayMs: 20 } })));
    const agent = await startAgent(testAgentConfig(proxy, { concurrency: 4 }));
    const views = await Promise.all(ids.map((id) => proxy.done(id)));
    expect(views.every((v) => v.status === 'succeeded' && v.attempt === 1)).toBe(true);
    const { carriedResults, resultCalls, requests } = agent.stats();
    expect(carriedResults).toBeGreaterThan(0);
    // Each result went once, on a lease request or in a results call: the calls that carried results saved a call each.
    expect(resultCalls).toBeLessThan(ids.length - carriedResults + 1);
    expect((requests['/agent/lease'] ?? 0) + (requests['/agent/results'] ?? 0)).toBeLessThan(2 * ids.length);
  });

  it('a parked long poll never holds a result back: it goes out in a results call while the poll stays parked', async () => {
    const agent = await startAgent(testAgentConfig(proxy, { concurrency: 4, proxy: { waitMs: 20_000 } as never }));
    await proxy.untilParked(1);
    const id = await proxy.enqueue({ type: 'ping' });
    const job = await proxy.done(id);
    expect(job.status).toBe('succeeded');
    // The agent polled again at once (free slots) and that poll is parked now, well inside its 20 s hold: the
    // result did not wait for it.
    await proxy.untilParked(1);
    expect(agent.stats().requests['/agent/results']).toBe(1);
    expect(agent.stats().carriedResults).toBe(0);
  });

  it('writes output pages in order and returns the record count', async () => {
    await startAgent(testAgentConfig(proxy, { resources: resources() }), { connectorKinds: kinds });
    const id = await proxy.enqueue({ type: 'listAccounts', resource: 'r1', payload: { pageSize: 3 } });
    const job = await proxy.done(id);
    expect(job).toMatchObject({ status: 'succeeded', result: { records: 12 }, outputRecords: 12 });
    const ndjson = await proxy.admin.get(`/v1/jobs/${id}/output`);
    const records = ndjson.text.trim().split('\n').map((l) => JSON.parse(l) as { id: string });
    expect(records.map((r) => r.id)).toEqual(Array.from({ length: 12 }, (_, i) => `u${i}`));
  });

  // An invalid payload of a known type is refused at enqueue now (spec/proxy/enqueue.test.ts); the agent's
  // own check, for proxies that do not check, is in spec/agent/dispatch.test.ts.
  it('fails unknown types with clear, non-retryable codes and keeps running', async () => {
    const agent = await startAgent(testAgentConfig(proxy, { resources: resources() }), { connectorKinds: kinds });
    const unknown = await proxy.enqueue({ type: 'format.disk', maxAttempts: 3 });
    const served = await proxy.enqueue({ type: 'sql.query', resource: 'r1', payload: { query: 'q' }, maxAttempts: 3 });
    expect(await proxy.done(unknown)).toMatchObject({ status: 'failed', attempt: 1, error: { code: 'unknown_type', retryable: false } });
    expect(await proxy.done(served)).toMatchObject({ status: 'failed', attempt: 1, error: { code: 'unknown_type', retryable: false } });
    const ping = await proxy.enqueue({ type: 'ping' });
    expect(await proxy.done(ping)).toMatchObject({ status: 'succeeded' });
    expect(agent.state).toBe('running');
  });

  it('keeps the resource password out of errors and logs, and passes results through unmodified', async () => {
    const cap = captureLogger();
    await startAgent(testAgentConfig(proxy, { resources: resources() }), { connectorKinds: kinds, log: cap.log });
    const boom = await proxy.enqueue({ type: 'grant', resource: 'r1', payload: { accountId: 'boom', entitlementId: 'g' }, maxAttempts: 1 });
    const leak = await proxy.enqueue({ type: 'grant', resource: 'r1', payload: { accountId: 'leak', entitlementId: 'g' } });
    const b = await proxy.done(boom);
    const l = await proxy.done(leak);
    expect(state.passwords.get('r1')).toBe(PASSWORD);
    expect(b).toMatchObject({ status: 'failed', error: { code: 'internal' } });
    expect(JSON.stringify(b)).not.toContain(PASSWORD);
    // Results are never rewritten by value (it corrupted data and was an oracle): what the connector
    // returns arrives as it is; keeping secrets out of results is each connector's job.
    expect(l.result).toEqual({ changed: true, note: `password is ${PASSWORD}` });
    await stopAgents();
    expect(cap.text()).toContain('job failed');
    // The connector logs through the job's child logger: every line names the job.
    const change = cap.lines().find((l) => l.message === 'fake change' && l.accountId === 'leak');
    expect(change).toMatchObject({ jobId: leak, type: 'grant', resource: 'r1', attempt: 1, component: 'agent' });
    expect(cap.text()).not.toContain(PASSWORD);
    expect(cap.text()).not.toContain(proxy.agentToken);
  });

  it('check reaches the proxy and every resource, and names what fails', async () => {
    const config = testAgentConfig(proxy, { resources: { ...resources(), gone: { kind: 'fake', down: true } } });
    // Warning rows (a secret file others can read) come first; spec/agent/check.test.ts covers them.
    const rows = (await checkAgent(config, { connectorKinds: kinds, log: silentLogger() })).filter((r) => r.level !== 'warn');
    expect(rows.map((r) => [r.target, r.ok])).toEqual([
      [`proxy ${proxy.url}`, true],
      ['config resources', true],
      ['resource r1 (fake)', true],
      ['resource gone (fake)', false],
    ]);
    expect(rows[3]!.detail).toContain('unreachable: cannot reach gone');
    const bad = await checkAgent({ ...config, proxy: { ...config.proxy, token: 'not-the-token-123456' }, resources: {} }, { log: silentLogger() });
    const badProxy = bad.find((r) => r.target.startsWith('proxy '));
    expect(badProxy).toMatchObject({ ok: false, level: 'fail' });
    expect(badProxy!.detail).toContain('unauthorized');
  });

  it('warns at every start when TLS verification is off', async () => {
    const cap = captureLogger();
    const config = testAgentConfig(proxy, { proxy: { insecureSkipTlsVerify: true } as never });
    await startAgent(config, { log: cap.log });
    const warn = cap.lines().find((l) => l.level === 'warn' && String(l.message).includes('TLS verification'));
    expect(warn).toBeDefined();
  });

  it('drains: lets short jobs finish within the grace period, then stops', async () => {
    const agent = await startAgent(testAgentConfig(proxy, { shutdownGraceMs: 10_000 }));
    const id = await proxy.enqueue({ type: 'ping', payload: { delayMs: 400 } });
    await waitFor(() => agent.stats().running === 1);
    await agent.stop();
    expect(agent.state).toBe('stopped');
    expect(await proxy.job(id)).toMatchObject({ status: 'succeeded', attempt: 1 });
    expect(agent.stats().requests['/agent/release']).toBeUndefined();
    await agent.stop(); // idempotent
  });

  it('drains: aborts what outlives the grace period and releases it in one call, spending no attempt', async () => {
    const agent = await startAgent(testAgentConfig(proxy, { shutdownGraceMs: 300, resources: resources() }), { connectorKinds: kinds });
    const slow = (n: number) => ({ type: 'grant', resource: 'r1', payload: { accountId: 'slow', entitlementId: `g${n}` } });
    const ids = await proxy.enqueueMany([slow(1), slow(2)]);
    await waitFor(() => agent.stats().running === 2);
    await agent.stop();
    expect(state.aborted.get('slow')).toBe('aborted');
    expect(agent.stats().requests['/agent/release']).toBe(1);
    for (const id of ids) expect(await proxy.job(id)).toMatchObject({ status: 'queued' });
    // Another agent takes them at once, on the same attempt.
    const other = await startAgent(testAgentConfig(proxy, { shutdownGraceMs: 0, resources: resources() }), { connectorKinds: kinds });
    await waitFor(async () => (await proxy.job(ids[0]!)).status === 'leased');
    expect(await proxy.job(ids[0]!)).toMatchObject({ status: 'leased', attempt: 1, agentId: other.agentId });
    await other.stop({ skipWait: true });
  });

  it('a second stop with skipWait cuts the grace period short', async () => {
    const agent = await startAgent(testAgentConfig(proxy, { shutdownGraceMs: 60_000 }));
    const id = await proxy.enqueue({ type: 'ping', payload: { delayMs: 60_000 } });
    await waitFor(() => agent.stats().running === 1);
    const first = agent.stop();
    await sleepUntil(() => agent.state === 'draining', { what: 'the agent draining' });
    await agent.stop({ skipWait: true });
    await first;
    expect(agent.state).toBe('stopped');
    expect(await proxy.job(id)).toMatchObject({ status: 'queued' });
    expect((await proxy.admin.post(`/v1/jobs/${id}/cancel`)).status).toBe(200);
  });
});
