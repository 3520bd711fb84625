import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { PassThrough } from 'node:stream';
import { FakeClock } from '../fixtures/fake-clock.js';
import { createLogger } from '../../lib/log/index.js';
import { compareSemVer, parseSemVer, versionStanding } from '../../lib/protocol/semver.js';
import { loadProxyConfig } from '../../lib/config/proxy.js';
import { waitFor } from '../fixtures/net.js';
import { createTestDatabase, startTestProxy, tempDir, TEST_ADMIN_TOKEN, Api, type TestProxy } from '../fixtures/proxy-server.js';

/**
 * Presence (online → stale → offline, goodbyes), agent versions (426,
 * outdated), attempts and the presence metrics and log lines, on an
 * in-process proxy with a FakeClock, on SQLite and PostgreSQL.
 */
let t: TestProxy | undefined;
let tmp: { dir: string; cleanup(): void } | undefined;
let pgDb: { url: string; drop(): Promise<void> } | undefined;
let dialect: 'sqlite' | 'postgres' = 'sqlite';
afterEach(async () => {
  await t?.stop();
  tmp?.cleanup();
  await pgDb?.drop();
  t = undefined;
  pgDb = undefined;
});

async function start(overrides: Record<string, unknown> = {}, clock = new FakeClock()) {
  tmp = tempDir();
  if (dialect === 'postgres') pgDb = await createTestDatabase();
  const lines: Array<Record<string, unknown>> = [];
  const stream = new PassThrough();
  stream.on('data', (b: Buffer) => {
    for (const l of b.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
  });
  t = await startTestProxy({ store: pgDb ? pgDb.url : `sqlite:${tmp.dir}/p.db`, overrides: { presenceMs: 60_000, maxWaitMs: 30_000, ...overrides }, clock, log: createLogger({ stream, level: 'info' }) });
  return { t, clock, lines };
}

const lease = (api: Api, agentId: string, version = '1.0.0', waitMs = 0) =>
  api.post('/v1/agent/lease', { agentId, hostname: `h-${agentId}`, version, resources: [], max: 5, waitMs });
const agentsOf = async (api: Api) => (await api.get('/v1/agents?limit=100')).body.agents as Array<Record<string, any>>;
const statusOf = async (api: Api, id: string) => (await agentsOf(api)).find((a) => a.agentId === id)?.status;
/** Moves the clock 2 s at a time (the presence check's period; each check is async) until `seen()`. */
async function logged(clock: FakeClock, seen: () => boolean): Promise<void> {
  for (let i = 0; i < 50 && !seen(); i++) {
    await clock.advance(2000);
    await settle();
  }
  expect(seen()).toBe(true);
}
/** Lets the proxy's clock-driven work run (FakeClock timers fire inside advance). */
const settle = () => new Promise((r) => setTimeout(r, 20));

describe('semver', () => {
  it('parses strictly and orders by precedence', () => {
    for (const bad of ['banana', '1.0', 'v1.0.0', '01.0.0', '1.0.0-', '1.0.0-01', '', ' 1.0.0', '1.0.0.0']) expect(parseSemVer(bad)).toBeNull();
    const order = ['0.9.9', '1.0.0-alpha', '1.0.0-alpha.1', '1.0.0-alpha.beta', '1.0.0-beta.2', '1.0.0-beta.11', '1.0.0-rc.1', '1.0.0', '1.0.1', '1.10.0', '2.0.0'];
    for (let i = 1; i < order.length; i++) expect(compareSemVer(parseSemVer(order[i - 1]!)!, parseSemVer(order[i]!)!)).toBeLessThan(0);
    expect(compareSemVer(parseSemVer('1.2.3+build.5')!, parseSemVer('1.2.3')!)).toBe(0);
    const b = { minVersion: '1.0.0', latestVersion: '1.2.0' };
    expect(['0.9.9', '1.0.0-rc.1', '1.0.0', '1.1.9', '1.2.0', '3.0.0', 'banana'].map((v) => versionStanding(v, b))).toEqual([
      'unsupported', 'unsupported', 'outdated', 'outdated', 'current', 'current', 'invalid',
    ]);
  });

  it('config takes agents.latestVersion / minVersion from the environment and refuses bad ones', () => {
    const c = loadProxyConfig({ env: { PROXY_AGENT_LATEST_VERSION: '1.2.0', PROXY_AGENT_MIN_VERSION: '1.0.0' } });
    expect(c.agents).toEqual({ latestVersion: '1.2.0', minVersion: '1.0.0' });
    expect(loadProxyConfig({ env: {} }).agents).toEqual({ latestVersion: null, minVersion: null });
    expect(() => loadProxyConfig({ env: { PROXY_AGENT_MIN_VERSION: 'banana' } })).toThrow(/agents.minVersion/);
    expect(() => loadProxyConfig({ env: { PROXY_AGENT_MIN_VERSION: '2.0.0', PROXY_AGENT_LATEST_VERSION: '1.0.0' } })).toThrow(/minVersion must not be newer/);
  });
});

describe.each(['sqlite', 'postgres'] as const)('on %s', (d) => {
  beforeEach(() => {
    dialect = d;
  });

  describe('presence', () => {
    it('online while within its poll hold + 5 s, stale after, offline after the presence window; logged once each', async () => {
      const { t, clock, lines } = await start();
      expect((await lease(t.agent, 'a1', '1.0.0', 0)).status).toBe(200);
      expect(await statusOf(t.admin, 'a1')).toBe('online');
      await clock.advance(5000);
      expect(await statusOf(t.admin, 'a1')).toBe('online');
      await clock.advance(1);
      expect(await statusOf(t.admin, 'a1')).toBe('stale');
      await logged(clock, () => lines.some((l) => /agent stale/.test(String(l.message)) && l.agentId === 'a1'));
      expect(lines.filter((l) => /agent stale/.test(String(l.message)) && l.agentId === 'a1')).toHaveLength(1);
      await clock.advance(60_000);
      expect(await statusOf(t.admin, 'a1')).toBe('offline');
      await logged(clock, () => lines.some((l) => /agent offline/.test(String(l.message)) && l.agentId === 'a1'));
      await clock.advance(10_000);
      await settle();
      expect(lines.filter((l) => /agent offline/.test(String(l.message)) && l.agentId === 'a1')).toHaveLength(1);
      expect(lines.filter((l) => l.message === 'agent joined' && l.agentId === 'a1')).toHaveLength(1);
    });

    it('a held poll counts its hold: not stale while the proxy holds it, stale 5 s after it ends unanswered', async () => {
      const { t, clock } = await start();
      const held = lease(t.agent, 'h1', '1.0.0', 20_000);
      // Parked (its wait timer is on the FakeClock) before time moves.
      await waitFor(async () => /outpost_proxy_parked_polls 1/.test((await new Api(t.proxy.url, TEST_ADMIN_TOKEN).get('/metrics')).text), 10_000, 10);
      await clock.advance(19_000);
      expect(await statusOf(t.admin, 'h1')).toBe('online');
      await clock.advance(1000);
      expect((await held).status).toBe(200);
      await clock.advance(4999);
      expect(await statusOf(t.admin, 'h1')).toBe('online');
      await clock.advance(2);
      expect(await statusOf(t.admin, 'h1')).toBe('stale');
      // It comes back: online again at once.
      await lease(t.agent, 'h1', '1.0.0', 0);
      expect(await statusOf(t.admin, 'h1')).toBe('online');
    });

    it('an agent that only heartbeats (all slots busy) is expected within a lease TTL', async () => {
      const { t, clock } = await start({ leaseTtlMs: 20_000 });
      await t.admin.enqueue({ type: 'ping', payload: {} });
      const [job] = (await lease(t.agent, 'b1')).body.jobs;
      await clock.advance(10_000);
      expect((await t.agent.post('/v1/agent/heartbeat', { agentId: 'b1', leases: [{ jobId: job.id, leaseToken: job.leaseToken }] })).status).toBe(200);
      const agent = (await agentsOf(t.admin)).find((a) => a.agentId === 'b1')!;
      expect(agent.inFlight).toBe(1);
      expect(agent.inFlightJobs).toEqual([job.id]);
      await clock.advance(20_000);
      expect(await statusOf(t.admin, 'b1')).toBe('online');
      await clock.advance(5001);
      expect(await statusOf(t.admin, 'b1')).toBe('stale');
    });

    it('goodbye: draining at once (heartbeats keep it draining), offline at once, a new poll brings it back', async () => {
      const { t, clock, lines } = await start();
      await lease(t.agent, 'g1');
      await lease(t.agent, 'g2');
      await lease(t.agent, 'g3');
      await t.agent.post('/v1/agent/goodbye', { agentId: 'g3', status: 'offline' });
      const bye = (agentId: string, status: string) => t!.agent.post('/v1/agent/goodbye', { agentId, status });
      expect((await bye('g1', 'draining')).body).toEqual({ status: 'draining' });
      expect(await statusOf(t.admin, 'g1')).toBe('draining');
      await t.agent.post('/v1/agent/heartbeat', { agentId: 'g1', leases: [] });
      await clock.advance(1000);
      expect(await statusOf(t.admin, 'g1')).toBe('draining');
      expect((await bye('g1', 'offline')).status).toBe(200);
      expect(await statusOf(t.admin, 'g1')).toBe('offline');
      expect(await statusOf(t.admin, 'g2')).toBe('online');
      expect(lines.some((l) => l.message === 'agent draining' && l.agentId === 'g1')).toBe(true);
      expect(lines.some((l) => l.message === 'agent left' && l.agentId === 'g1')).toBe(true);
      // Wrong shapes and roles are refused; an unknown agent is fine (nothing to change).
      expect((await bye('g1', 'online')).status).toBe(400);
      expect((await t.admin.post('/v1/agent/goodbye', { agentId: 'g1', status: 'offline' })).status).toBe(403);
      expect((await bye('nobody', 'offline')).status).toBe(200);
      await lease(t.agent, 'g1');
      expect(await statusOf(t.admin, 'g1')).toBe('online');
      expect(lines.filter((l) => l.message === 'agent joined' && l.agentId === 'g1')).toHaveLength(2);
      // The goodbye is not logged as a silent loss later on.
      await clock.advance(70_000);
      await logged(clock, () => lines.some((l) => /agent offline/.test(String(l.message)) && l.agentId === 'g2'));
      // g3 said goodbye and stayed away: it is not logged again as a silent loss.
      expect(lines.some((l) => /agent (stale|offline)/.test(String(l.message)) && l.agentId === 'g3')).toBe(false);
    });

    it('metrics: agents per status and per version; pool labels only for an authorised scrape', async () => {
      const { t, clock } = await start({ agents: { latestVersion: '1.2.0', minVersion: null } });
      await lease(t.agent, 'm1', '1.2.0');
      await lease(t.agent, 'm2', '1.0.0');
      await lease(t.agent, 'm3', 'banana');
      await t.agent.post('/v1/agent/goodbye', { agentId: 'm2', status: 'draining' });
      // Past the 2 s write slack of contact_by, so the second poll is stored.
      await clock.advance(2500);
      await lease(t.agent, 'm1', '1.2.0');
      await lease(t.agent, 'm2', '1.0.0');
      await clock.advance(3000);
      const all = await new Api(t.proxy.url, TEST_ADMIN_TOKEN).get('/metrics');
      expect(all.text).toMatch(/outpost_proxy_agents\{pool="p1",status="online"\} 2/);
      expect(all.text).toMatch(/outpost_proxy_agents\{pool="p1",status="stale"\} 1/);
      expect(all.text).toMatch(/outpost_proxy_agents_by_version\{pool="p1",version="invalid"\} 1/);
      expect(all.text).toMatch(/outpost_proxy_agents_by_version\{pool="p1",version="1.2.0"\} 1/);
      const anonymous = await fetch(t.proxy.url + '/metrics').then((r) => r.text());
      expect(anonymous).toMatch(/outpost_proxy_agents\{status="online"\} 2/);
      expect(anonymous).not.toMatch(/pool="p1"/);
    });
  });

  describe('versions', () => {
    it('min/latest matrix: 426 upgrade_required below the minimum or unparseable, versions in every answer, outdated flagged', async () => {
      const { t } = await start({ agents: { latestVersion: '1.2.0', minVersion: '1.0.0' } });
      const matrix: Array<[string, number, boolean]> = [
        ['0.9.9', 426, true], ['1.0.0-rc.1', 426, true], ['banana', 426, true], ['1.0', 426, true], ['<b>x</b>', 426, true],
        ['1.0.0', 200, true], ['1.1.7', 200, true], ['1.2.0', 200, false], ['2.0.0', 200, false],
      ];
      for (const [i, [version, status, outdated]] of matrix.entries()) {
        const r = await lease(t.agent, `v${i}`, version);
        expect([version, r.status]).toEqual([version, status]);
        if (status === 426) {
          expect(r.body.error.code).toBe('upgrade_required');
          expect(r.body.error.message).toMatch(/install outpost-agent 1\.2\.0 or newer/);
          expect(r.headers.get('retry-after')).toBe('300');
          expect(r.text).not.toContain('<b>');
        } else {
          expect(r.body).toMatchObject({ jobs: [], latestVersion: '1.2.0', minVersion: '1.0.0' });
        }
        const a = (await agentsOf(t.admin)).find((x) => x.agentId === `v${i}`)!;
        expect([version, a.outdated, a.upgradeRequired, a.status]).toEqual([version, outdated, status === 426, 'online']);
      }
      expect((await lease(t.agent, 'v0', '0.9.9')).body.error.message).toMatch(/older than 1\.0\.0, the oldest this integration-proxy serves \(agents\.minVersion\)/);
      expect((await lease(t.agent, 'v2', 'banana')).body.error.message).toMatch(/"banana", which is not a version/);
      // A job answer carries them too.
      await t.admin.enqueue({ type: 'ping', payload: {} });
      expect((await lease(t.agent, 'v6', '1.1.7')).body).toMatchObject({ latestVersion: '1.2.0', minVersion: '1.0.0', heldMs: expect.any(Number) });
    });

    it('without configured versions nothing is checked (backward compatible)', async () => {
      const { t } = await start();
      const r = await lease(t.agent, 'x1', 'banana');
      expect(r.status).toBe(200);
      expect(r.body).toEqual({ jobs: [], carries: ['results', 'leases'] });
      expect((await agentsOf(t.admin))[0]).toMatchObject({ outdated: false, upgradeRequired: false });
    });
  });

  describe('attempts', () => {
    it('GET /v1/jobs/{id} lists each lease: expired on one agent, released, failed on another with its error', async () => {
      const { t, clock } = await start({ leaseTtlMs: 2000, reaperIntervalMs: 200 });
      const id = await t.admin.enqueue({ type: 'ping', payload: {}, maxAttempts: 3 });
      const [first] = (await lease(t.agent, 'k1')).body.jobs;
      expect((await t.admin.get(`/v1/jobs/${id}`)).body.attempts).toEqual([
        { attempt: 1, agentId: 'k1', startedAt: expect.any(String), endedAt: null, outcome: 'running', error: null },
      ]);
      await clock.advance(2500);
      await settle();
      await clock.advance(200);
      await settle();
      const [second] = (await lease(t.agent, 'k2')).body.jobs;
      expect(second.leaseToken).not.toBe(first.leaseToken);
      await t.agent.post('/v1/agent/release', { agentId: 'k2', leases: [{ jobId: id, leaseToken: second.leaseToken }] });
      const [third] = (await lease(t.agent, 'k2')).body.jobs;
      await clock.advance(100);
      const error = { code: 'permission_denied', message: 'the account may not do this', retryable: false };
      await t.agent.post('/v1/agent/results', { agentId: 'k2', results: [{ jobId: id, leaseToken: third.leaseToken, outcome: 'failed', error }] });
      const job = (await t.admin.get(`/v1/jobs/${id}`)).body;
      expect(job.status).toBe('failed');
      expect(job.attempts.map((a: any) => [a.attempt, a.agentId, a.outcome, a.error?.code ?? null])).toEqual([
        [1, 'k1', 'expired', null],
        [2, 'k2', 'released', null],
        [2, 'k2', 'failed', 'permission_denied'],
      ]);
      expect(Date.parse(job.attempts[2].endedAt) - Date.parse(job.attempts[2].startedAt)).toBe(100);
      // Listings do not carry attempts.
      expect((await t.admin.get('/v1/jobs')).body.jobs[0].attempts).toBeUndefined();
    });

    it('a job cancelled while leased shows its attempt cancelled', async () => {
      const { t } = await start();
      const id = await t.admin.enqueue({ type: 'ping', payload: {} });
      await lease(t.agent, 'c1');
      await t.admin.post(`/v1/jobs/${id}/cancel`);
      expect((await t.admin.get(`/v1/jobs/${id}`)).body.attempts).toMatchObject([{ agentId: 'c1', outcome: 'cancelled', endedAt: expect.any(String) }]);
    });
  });
});
