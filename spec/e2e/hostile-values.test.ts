import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JobView } from '../../lib/protocol/schemas.js';
import { waitFor } from '../fixtures/net.js';
import { buildDist, startAgentProcess, startProxyProcess, stopAll, type Proc, type ProxyProc } from '../fixtures/processes.js';
import { startSlapd, type Slapd } from '../fixtures/slapd.js';
import { scratchPostgres, uniquePrefix, type ScratchDatabase } from '../fixtures/sql.js';

/**
 * Data from a directory and a database, and payloads from the cloud, pass
 * through a real agent (real proxy, slapd and PostgreSQL) untouched and in
 * linear time: a 1 MB value is listed while /healthz keeps answering; a
 * group named like the bind password is listed intact; a payload full of
 * password guesses comes back with nothing that tells a right guess from a
 * wrong one.
 */
const MB = 1024 * 1024;
/** The old URL-credential pattern's worst case: one long run of `[a-z0-9+.-]`. */
const BIG = 'abc.def-'.repeat(MB / 8);
const PG_PASSWORD = 'PgAgentPw-7f3k9';
const PG_URL = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

let proxy: ProxyProc;
let slapd: Slapd;
let db: ScratchDatabase;
let agent: Proc;
let healthUrl: string;
let dir: string;
let pgRole: string;

beforeAll(async () => {
  buildDist();
  dir = mkdtempSync(join(tmpdir(), 'outpost-e2e-hostile-'));
  [proxy, slapd, db] = await Promise.all([
    startProxyProcess(),
    startSlapd({
      users: 4,
      groups: [
        { cn: 'big', kind: 'groupOfNames', members: [0], description: BIG },
        { cn: 'admins', kind: 'groupOfNames', members: [1] },
      ],
    }),
    scratchPostgres(PG_URL),
  ]);
  pgRole = `${uniquePrefix()}_agent`;
  await db.admin.raw(`create table docs (id int primary key, body text not null)`);
  await db.admin.raw(`insert into docs values (1, ?), (2, 'password=hunter2')`, [BIG]);
  await db.admin.raw(`create role "${pgRole}" login password '${PG_PASSWORD}'`);
  await db.admin.raw(`grant select on docs to "${pgRole}"`);
  const pg = new URL(db.url);
  // The bind password is `admin` (slapd's rootpw): a group called `admins` must still list as `admins`.
  writeFileSync(join(dir, 'ldap-pw'), `${slapd.adminPassword}\n`);
  writeFileSync(join(dir, 'pg-pw'), `${PG_PASSWORD}\n`);
  const config = {
    proxy: { url: proxy.url, token: proxy.agentToken, waitMs: 2000 },
    concurrency: 4,
    shutdownGraceMs: 1000,
    health: { host: '127.0.0.1', port: 0 },
    log: { level: 'debug', format: 'json' },
    resources: {
      corp: { kind: 'ldap', url: slapd.url, bindDN: slapd.adminDN, passwordFile: join(dir, 'ldap-pw'), baseDN: slapd.baseDN },
      hr: {
        kind: 'postgres',
        connection: { host: pg.hostname, port: Number(pg.port || 5432), database: db.name, user: pgRole, passwordFile: join(dir, 'pg-pw') },
        queries: { docs: 'select id, body from docs order by id' },
      },
    },
  };
  writeFileSync(join(dir, 'agent.json'), JSON.stringify(config));
  agent = startAgentProcess('hostile-agent', { AGENT_CONFIG: join(dir, 'agent.json'), AGENT_ID: 'hostile-agent', HTTPS_PROXY: '', HTTP_PROXY: '', https_proxy: '', http_proxy: '' });
  const started = JSON.parse(await agent.waitForLine(/"agent started"/, 30_000)) as { healthPort: number };
  healthUrl = `http://127.0.0.1:${started.healthPort}/healthz`;
}, 120_000);

afterAll(async () => {
  await stopAll();
  await Promise.all([proxy?.stop(), slapd?.stop(), db?.drop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function run(job: Record<string, unknown>, timeoutMs = 60_000): Promise<JobView> {
  const { id } = await proxy.call<{ id: string }>('POST', '/v1/jobs', { pool: proxy.pool, payload: {}, maxAttempts: 1, ...job });
  let view: JobView | undefined;
  await waitFor(async () => {
    view = await proxy.call<JobView>('GET', `/v1/jobs/${id}?waitMs=2000`);
    return ['succeeded', 'failed'].includes(view.status);
  }, timeoutMs, 0);
  return view!;
}

async function output(id: string): Promise<Array<Record<string, unknown>>> {
  const res = await fetch(`${proxy.url}/v1/jobs/${id}/output`, { headers: { authorization: `Bearer ${proxy.adminToken}` } });
  expect(res.status).toBe(200);
  return (await res.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** One GET /healthz: its status and how long it took (a frozen event loop answers late or not at all). */
function healthz(): Promise<{ status: number; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = request(healthUrl, { timeout: 30_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - t0 }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 0, ms: performance.now() - t0 }));
    req.end();
  });
}

/** Runs `job` while polling /healthz back to back; every poll must answer 200. */
async function listWhilePolling(job: Record<string, unknown>): Promise<{ view: JobView; listMs: number; polls: number; worstMs: number }> {
  const answers: Array<{ status: number; ms: number }> = [];
  let done = false;
  const poller = (async () => {
    while (!done) answers.push(await healthz());
  })();
  const t0 = performance.now();
  const view = await run(job);
  const listMs = performance.now() - t0;
  done = true;
  await poller;
  expect(answers.length).toBeGreaterThan(0);
  expect(answers.filter((a) => a.status !== 200)).toEqual([]);
  const worstMs = Math.max(...answers.map((a) => a.ms));
  // Not a speed test: a generous bound that a frozen agent (seconds to minutes before) cannot meet.
  expect(worstMs).toBeLessThan(5000);
  return { view, listMs, polls: answers.length, worstMs };
}

describe('hostile values through a real agent', () => {
  it('lists a 1 MB LDAP attribute untouched, /healthz answering throughout; `admins` stays `admins` with bind password `admin`', async () => {
    const r = await listWhilePolling({ type: 'listEntitlements', resource: 'corp' });
    process.stdout.write(`[measure] ldap 1 MB listEntitlements: ${Math.round(r.listMs)} ms, /healthz ${r.polls} polls, worst ${Math.round(r.worstMs)} ms\n`);
    expect(r.view.status).toBe('succeeded');
    const records = await output(r.view.id);
    const big = records.find((x) => x.name === 'big');
    expect(big?.description).toBe(BIG);
    const admins = records.find((x) => x.name === 'admins');
    expect(String(admins?.id)).toMatch(/^cn=admins,ou=groups,/i);
    expect(JSON.stringify(records)).not.toContain('[REDACTED]');
  }, 120_000);

  it('lists a 1 MB PostgreSQL column untouched (and `password=hunter2` as it is), /healthz answering throughout', async () => {
    const r = await listWhilePolling({ type: 'sql.query', resource: 'hr', payload: { query: 'docs' } });
    process.stdout.write(`[measure] postgres 1 MB sql.query: ${Math.round(r.listMs)} ms, /healthz ${r.polls} polls, worst ${Math.round(r.worstMs)} ms\n`);
    expect(r.view.status).toBe('succeeded');
    const records = await output(r.view.id);
    expect(records).toEqual([{ id: 1, body: BIG }, { id: 2, body: 'password=hunter2' }]);
  }, 120_000);

  it('a payload full of guesses comes back unmodified and tells a right guess from a wrong one in no way', async () => {
    // Real secrets of this agent, and wrong guesses of the same shape.
    const right = [slapd.adminPassword, PG_PASSWORD, proxy.agentToken];
    const wrong = ['admim', 'PgAgentPw-0000x', `${proxy.agentToken.slice(0, -4)}zzzz`];
    const swap = (text: string) => right.reduce((t, s, i) => t.split(s).join(wrong[i]!), text);
    const grant = (guesses: string[]) => ({
      type: 'grant', resource: 'corp',
      payload: { accountId: `uid=${guesses.join(' ')},${slapd.peopleDN}`, entitlementId: `cn=${guesses.join(' ')},${slapd.groupsDN}` },
    });
    const query = (guess: string) => ({ type: 'sql.query', resource: 'hr', payload: { query: guess } });
    const jobs = await Promise.all([
      run(grant(right)), run(grant(wrong)),
      run(query(PG_PASSWORD)), run(query(wrong[1]!)),
      run(query(slapd.adminPassword)), run(query(wrong[0]!)),
    ]);
    for (let i = 0; i < jobs.length; i += 2) {
      const [r, w] = [jobs[i]!, jobs[i + 1]!];
      expect(r.status).toBe('failed');
      expect(w.status).toBe('failed');
      // Same answer for a right and a wrong guess, once each guess is swapped for its counterpart.
      expect(swap(JSON.stringify(r.error))).toBe(JSON.stringify(w.error));
      expect(JSON.stringify(r)).not.toContain('[REDACTED]');
      expect(r.result ?? null).toBeNull();
    }
  }, 120_000);

  it('no secret in any log line', async () => {
    expect(await agent.stop()).toBe(0);
    const logs = [agent.output(), proxy.proc.output()].join('\n');
    expect(logs).toContain('"agent started"');
    for (const s of [proxy.agentToken, PG_PASSWORD, proxy.adminToken]) expect(logs).not.toContain(s);
  }, 60_000);
});
