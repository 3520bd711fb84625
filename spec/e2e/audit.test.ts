import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import got from 'got';
import { AGENT_VERSION } from '../../lib/agent/version.js';
import { loadProxyConfig } from '../../lib/config/proxy.js';
import { createProxyServer } from '../../lib/proxy/server.js';
import { waitFor } from '../fixtures/net.js';
import type { Connector, ConnectorFactory } from '../../lib/connectors/types.js';
import { OutpostError } from '../../lib/util/errors.js';
import { captureLogger, startAgent, stopAgents, testAgentConfig } from '../agent/harness.js';
import { AGENT_SUITE_PROXY, startTestProxy, type TestProxy } from '../fixtures/proxy-server.js';
import { scratchPostgres, uniquePrefix, type ScratchDatabase } from '../fixtures/sql.js';

/**
 * One `audit` line at info for every write job (lib/agent/audit.ts): grant
 * and revoke on a real PostgreSQL through a real (in-process) agent and
 * proxy; the lifecycle types through a connector that records nothing but
 * answers like one (the operations themselves are tested per connector).
 */
const PG_URL = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const q = (name: string) => `"${name.replace(/"/g, '""')}"`;
const PASSWORD = 'Audit-Plaintext-Pw-7731';
const ATTRIBUTE_VALUE = 'audit-attribute-value-5521';

let proxy: TestProxy;
beforeAll(async () => {
  proxy = await startTestProxy(AGENT_SUITE_PROXY);
});
afterAll(async () => {
  await stopAgents();
  await proxy.stop();
});

const audits = (lines: Array<Record<string, unknown>>) => lines.filter((l) => l.message === 'audit');

describe('audit lines', () => {
  it('grant and revoke on PostgreSQL: one info line each with account, entitlement, changed, duration and outcome', async () => {
    const db: ScratchDatabase = await scratchPostgres(PG_URL);
    const prefix = uniquePrefix();
    const account = `${prefix}_alice`;
    const role = `${prefix}_readers`;
    try {
      await db.admin.raw(`create role ${q(account)} login`);
      await db.admin.raw(`create role ${q(role)} nologin`);
      const cap = captureLogger('info');
      await startAgent(testAgentConfig(proxy, { resources: { pg: { kind: 'postgres', connection: { url: db.url } } } }), { log: cap.log });
      const ids: string[] = [];
      for (const type of ['grant', 'grant', 'revoke', 'revoke']) {
        const id = await proxy.enqueue({ type, resource: 'pg', payload: { accountId: account, entitlementId: role } });
        expect((await proxy.done(id)).status).toBe('succeeded');
        ids.push(id);
      }
      // A refused write (a privileged role) is audited too, with its error code.
      const refused = await proxy.enqueue({ type: 'grant', resource: 'pg', payload: { accountId: account, entitlementId: 'pg_write_server_files' }, maxAttempts: 1 });
      const refusedView = await proxy.done(refused);
      expect(refusedView.status).toBe('failed');
      const lines = audits(cap.lines());
      expect(lines.map((l) => [l.jobId, l.type, l.changed, l.outcome])).toEqual([
        [ids[0], 'grant', true, 'succeeded'],
        [ids[1], 'grant', false, 'succeeded'],
        [ids[2], 'revoke', true, 'succeeded'],
        [ids[3], 'revoke', false, 'succeeded'],
        [refused, 'grant', null, 'failed'],
      ]);
      for (const l of lines) {
        expect(l).toMatchObject({ level: 'info', resource: 'pg', account, component: 'agent' });
        expect(typeof l.durationMs).toBe('number');
        expect(l).not.toHaveProperty('payload');
      }
      expect(lines[0]!.entitlement).toBe(role);
      process.stdout.write(`[sample] ${JSON.stringify(lines[0])}\n[sample] ${JSON.stringify(lines[4])}\n`);
      expect(lines[4]).toMatchObject({ entitlement: 'pg_write_server_files', code: refusedView.error!.code });
      // And really granted, then revoked: the audit line tells the truth.
      const member = await db.admin.raw('select count(*)::int as n from pg_auth_members m join pg_roles r on r.oid = m.roleid join pg_roles u on u.oid = m.member where r.rolname = ? and u.rolname = ?', [role, account]);
      expect(member.rows[0].n).toBe(0);
    } finally {
      await stopAgents();
      for (const r of [account, role]) await db.admin.raw(`drop role if exists ${q(r)}`).catch(() => undefined);
      await db.drop();
    }
  }, 60_000);

  it('every lifecycle write and setAccountEnabled: one line each; never a password or attribute value', async () => {
    const cap = captureLogger('debug');
    await startAgent(testAgentConfig(proxy, { resources: { dir: { kind: 'lifecycle', allowUnsealedSecrets: true } } }), {
      log: cap.log,
      connectorKinds: { lifecycle: lifecycleConnector },
    });
    const jobs = [
      { type: 'createAccount', payload: { account: { name: 'new.user', attributes: { title: ATTRIBUTE_VALUE } } } },
      { type: 'updateAccount', payload: { accountId: 'u-1', attributes: { title: ATTRIBUTE_VALUE } } },
      { type: 'setAccountEnabled', payload: { accountId: 'u-1', enabled: false } },
      { type: 'setPassword', payload: { accountId: 'u-1', password: PASSWORD } },
      { type: 'deleteAccount', payload: { accountId: 'u-1' } },
      { type: 'deleteAccount', payload: { accountId: 'gone' } },
      // A read: no audit line.
      { type: 'getAccount', payload: { accountId: 'u-1' } },
    ];
    const views = [];
    for (const j of jobs) views.push(await proxy.done(await proxy.enqueue({ ...j, resource: 'dir', maxAttempts: 1 })));
    const lines = audits(cap.lines());
    expect(lines.map((l) => l.type)).toEqual(['createAccount', 'updateAccount', 'setAccountEnabled', 'setPassword', 'deleteAccount', 'deleteAccount']);
    expect(lines[0]).toMatchObject({ account: 'cn=new.user', entitlement: null, changed: true, outcome: 'succeeded', level: 'info' });
    expect(lines[1]).toMatchObject({ account: 'u-1', changed: true, outcome: 'succeeded' });
    expect(lines[2]).toMatchObject({ account: 'u-1', changed: true, outcome: 'succeeded' });
    // setPassword is audited however it ends (sealing may refuse a plain password on this build).
    expect(lines[3]).toMatchObject({ account: 'u-1', jobId: views[3]!.id });
    process.stdout.write(`[sample] ${JSON.stringify(lines[3])}\n`);
    if (views[3]!.status === 'succeeded') expect(lines[3]).toMatchObject({ changed: true, outcome: 'succeeded' });
    else expect(lines[3]).toMatchObject({ outcome: 'failed', code: views[3]!.error!.code });
    expect(lines[4]).toMatchObject({ account: 'u-1', changed: true });
    expect(lines[5]).toMatchObject({ account: 'gone', changed: false });
    for (const l of lines) expect(Object.keys(l).sort()).toEqual(expect.arrayContaining(['jobId', 'type', 'resource', 'account', 'entitlement', 'changed', 'durationMs', 'outcome']));
    // Whatever else was logged at debug, neither the password nor the attribute value is in any line.
    expect(cap.text()).not.toContain(PASSWORD);
    expect(lines.map((l) => JSON.stringify(l)).join('\n')).not.toContain(ATTRIBUTE_VALUE);
  }, 60_000);
});

describe('proxy log lines', () => {
  it('a lease expiry names job, agent and attempt; auth failures are logged rate-limited, never with the token; quota refusals too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'outpost-proxy-log-'));
    const cap = captureLogger('info');
    const adminToken = 'admin-token-proxy-log-0123456789';
    const config = loadProxyConfig({
      env: {},
      overrides: {
        host: '127.0.0.1', port: 0, store: { url: `sqlite:${join(dir, 'proxy.db')}` }, adminToken, leaseTtlMs: 1000, reaperIntervalMs: 100,
        quotas: { requestsPerToken: 5, requestWindowMs: 60_000 },
      },
    });
    const server = createProxyServer(config, { log: cap.log });
    try {
      const agentToken = await server.createToken({ pool: 'p1' });
      await server.start();
      const http = got.extend({ prefixUrl: server.url, retry: { limit: 0 }, throwHttpErrors: false, responseType: 'json' });
      const enq = await http.post('v1/jobs', { headers: { authorization: `Bearer ${adminToken}` }, json: { pool: 'p1', type: 'ping', payload: {}, maxAttempts: 1 } });
      const jobId = (enq.body as unknown as { id: string }).id;
      const lease = await http.post('v1/agent/lease', {
        headers: { authorization: `Bearer ${agentToken}` },
        json: { agentId: 'agent-log-1', hostname: 'h', version: AGENT_VERSION, resources: [], max: 1, waitMs: 0 },
      });
      expect((lease.body as unknown as { jobs: Array<{ id: string }> }).jobs.map((j) => j.id)).toEqual([jobId]);
      // Never renewed: the reaper returns it and says whose it was.
      await waitFor(() => cap.lines().some((l) => l.message === 'lease expired'), 10_000);
      expect(cap.lines().find((l) => l.message === 'lease expired')).toMatchObject({
        level: 'info', jobId, pool: 'p1', agentId: 'agent-log-1', attempt: 1, requeued: false, outcome: 'failed',
      });

      // 20 requests with a wrong token: one line (per reason, address and minute), the token nowhere.
      const wrong = 'wrong-token-never-logged-4242';
      for (let i = 0; i < 20; i++) expect((await http.get('v1/agents?pool=p1', { headers: { authorization: `Bearer ${wrong}` } })).statusCode).toBe(401);
      expect((await http.get('v1/agents?pool=p1')).statusCode).toBe(401);
      // An agent token on the job side: 403, its own line.
      expect((await http.get('v1/agents?pool=p1', { headers: { authorization: `Bearer ${agentToken}` } })).statusCode).toBe(403);
      const failures = cap.lines().filter((l) => l.message === 'authentication failed');
      expect(failures.map((l) => [l.status, l.reason, l.count])).toEqual([
        [401, 'unknown token', 1],
        [401, 'missing credentials: send the header Authorization: Bearer <token>', 1],
        [403, 'the job API needs an admin or viewer token', 1],
      ]);
      expect(failures[0]).toMatchObject({ level: 'info', ip: '127.0.0.1', method: 'GET', route: '/v1/agents' });
      expect(cap.text()).not.toContain(wrong);
      expect(cap.text()).not.toContain(agentToken);

      // More than 5 requests a minute with the admin token: 429s, one quota line.
      let refused = 0;
      for (let i = 0; i < 10; i++) if ((await http.get('v1/agents?pool=p1', { headers: { authorization: `Bearer ${adminToken}` } })).statusCode === 429) refused++;
      expect(refused).toBeGreaterThan(0);
      const quota = cap.lines().filter((l) => l.message === 'quota refused a request');
      expect(quota).toEqual([expect.objectContaining({ level: 'info', quota: 'requests_per_token', count: 1 })]);
      process.stdout.write(`[sample] ${JSON.stringify(cap.lines().find((l) => l.message === 'lease expired'))}\n[sample] ${JSON.stringify(failures[0])}\n[sample] ${JSON.stringify(quota[0])}\n`);
    } finally {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

/** Answers lifecycle writes like a directory would; `gone` is absent. */
const lifecycleConnector: ConnectorFactory = () => {
  const notHere = async () => {
    throw new OutpostError('unknown_type', 'not served');
  };
  const c: Connector = {
    kind: 'lifecycle',
    checkResource: async () => ({ ok: true, latencyMs: 0, details: {} }),
    listAccounts: notHere,
    listEntitlements: notHere,
    listGrants: notHere,
    grant: notHere,
    revoke: notHere,
    setAccountEnabled: async () => ({ changed: true }),
    getAccount: async (p) => ({ id: p.accountId, uid: null, name: 'x', email: null, enabled: true, attributes: {} }),
    createAccount: async (p) => ({ changed: true, accountId: `cn=${p.account.name}` }),
    updateAccount: async () => ({ changed: true }),
    deleteAccount: async (p) => ({ changed: p.accountId !== 'gone' }),
    setPassword: async () => ({ changed: true }),
    extra: {},
    close: async () => undefined,
  };
  return c;
};
