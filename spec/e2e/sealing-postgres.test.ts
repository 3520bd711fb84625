import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import type { JobView } from '../../lib/protocol/schemas.js';
import { waitFor } from '../fixtures/net.js';
import { ROOT, buildDist, startAgentProcess, startProxyProcess, stopAll, type Proc, type ProxyProc } from '../fixtures/processes.js';
import { startPgCluster, type PgCluster } from '../fixtures/sql-pg.js';

/**
 * Sealed passwords with a real connector: a real integration-proxy process
 * (SQLite), a real `bin/agent start` with a `postgres` resource on a
 * throwaway cluster (scram-sha-256, `log_statement = 'all'`), the real CLIs
 * for keygen, set-key and seal. createAccount and setPassword carry sealed
 * passwords; the new role logs in with the plaintext; the plaintext is in no
 * proxy file, log, job row or result, not in the agent's log and not in the
 * server's statement log.
 */
const AGENT_PW = 'Agent-Db-Pw-Sealing-55';
const PW1 = 'Sealed-First-Pw-3a9b7c';
const PW2 = 'Sealed-Second-Pw-8d2e1f';
let cluster: PgCluster;
let proxy: ProxyProc;
let agent: Proc;
let dir: string;
let publicKey: string;

function cli(bin: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}) {
  const r = spawnSync(join(ROOT, 'bin', bin), args, { cwd: ROOT, env: { ...process.env, ...opts.env }, input: opts.input, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
const seal = (secret: string) => JSON.parse(cli('agent', ['seal', '--public-key', publicKey], { input: secret }).stdout) as { sealed: string };

async function login(user: string, password: string): Promise<string> {
  const client = new pg.Client({ host: cluster.host, port: cluster.port, user, password, database: 'postgres' });
  await client.connect();
  try {
    return String((await client.query('select current_user as u')).rows[0].u);
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  buildDist();
  dir = mkdtempSync(join(tmpdir(), 'outpost-e2e-sealing-pg-'));
  cluster = await startPgCluster({ password: 'Cluster-Admin-Pw-Sealing', settings: ['log_statement=all'] });
  const admin = new pg.Client({ host: cluster.host, port: cluster.port, user: 'postgres', password: cluster.password, database: 'postgres' });
  await admin.connect();
  await admin.query(`create role outpost_agent login createrole password '${AGENT_PW}'`);
  await admin.end();
  proxy = await startProxyProcess({ env: { PROXY_LOG_LEVEL: 'debug' } });
  const keygen = cli('agent', ['keygen', '--out', join(dir, 'sealing.key')]);
  expect(keygen.status).toBe(0);
  publicKey = keygen.stdout.trim();
  expect(cli('integration-proxy', ['pool', 'set-key', '--pool', proxy.pool, '--public-key', publicKey], { env: { PROXY_STORE: `sqlite:${join(proxy.dir, 'proxy.db')}` } }).status).toBe(0);
  writeFileSync(join(dir, 'token'), `${proxy.agentToken}\n`);
  writeFileSync(join(dir, 'db-pw'), `${AGENT_PW}\n`);
  const config = {
    proxy: { url: proxy.url, tokenFile: join(dir, 'token'), waitMs: 3000 },
    sealing: { privateKeyFile: join(dir, 'sealing.key') },
    concurrency: 2,
    shutdownGraceMs: 1000,
    log: { level: 'debug', format: 'json' },
    resources: {
      pg: { kind: 'postgres', connection: { host: cluster.host, port: cluster.port, user: 'outpost_agent', passwordFile: join(dir, 'db-pw'), database: 'postgres' } },
    },
  };
  writeFileSync(join(dir, 'agent.json'), JSON.stringify(config));
  agent = startAgentProcess('sealing-agent', { AGENT_CONFIG: join(dir, 'agent.json'), AGENT_ID: 'sealing-agent' });
  await agent.waitForLine(/"agent started"/, 30_000);
}, 120_000);

afterAll(async () => {
  await stopAll();
  await proxy?.stop();
  await cluster?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

async function run(job: Record<string, unknown>): Promise<JobView> {
  const { id } = await proxy.call<{ id: string }>('POST', '/v1/jobs', { pool: proxy.pool, maxAttempts: 1, resource: 'pg', ...job });
  let view: JobView | undefined;
  await waitFor(async () => {
    view = await proxy.call<JobView>('GET', `/v1/jobs/${id}?waitMs=5000`);
    return view.status === 'succeeded' || view.status === 'failed';
  }, 30_000, 10);
  return view!;
}

function everything(): Record<string, Buffer> {
  const db = join(proxy.dir, 'proxy.db');
  const out: Record<string, Buffer> = {
    'proxy.db': readFileSync(db),
    'proxy output': Buffer.from(proxy.proc.output()),
    'agent output': Buffer.from(agent.output()),
    'postgres server log': readFileSync(cluster.logFile),
  };
  if (existsSync(`${db}-wal`)) out['proxy.db-wal'] = readFileSync(`${db}-wal`);
  const conn = new Database(db, { readonly: true, fileMustExist: true });
  try {
    for (const row of conn.prepare('SELECT * FROM outpost_jobs').all() as Array<{ id: string }>) out[`row ${row.id}`] = Buffer.from(JSON.stringify(row));
  } finally {
    conn.close();
  }
  return out;
}
const holding = (where: Record<string, Buffer>, needle: string) => Object.entries(where).filter(([, b]) => b.includes(Buffer.from(needle))).map(([k]) => k);

describe('sealed passwords through a real agent and the postgres connector', () => {
  it('createAccount and setPassword with sealed passwords: the role logs in; the plaintext is nowhere', async () => {
    const s1 = seal(PW1);
    const created = await run({ type: 'createAccount', payload: { account: { name: 'sealed_alice' }, password: s1 } });
    expect([created.status, created.result, created.error]).toEqual(['succeeded', { changed: true, accountId: 'sealed_alice' }, null]);
    expect(await login('sealed_alice', PW1)).toBe('sealed_alice');

    const s2 = seal(PW2);
    const set = await run({ type: 'setPassword', payload: { accountId: 'sealed_alice', password: s2 } });
    expect([set.status, set.result]).toEqual(['succeeded', { changed: true }]);
    expect(await login('sealed_alice', PW2)).toBe('sealed_alice');
    await expect(login('sealed_alice', PW1)).rejects.toMatchObject({ code: '28P01' });

    // A plain string is refused (the resource does not set allowUnsealedSecrets): nothing changes.
    const plain = await run({ type: 'setPassword', payload: { accountId: 'sealed_alice', password: PW1 } });
    expect([plain.status, plain.error?.code]).toEqual(['failed', 'invalid_request']);
    expect(await login('sealed_alice', PW2)).toBe('sealed_alice');

    const all = everything();
    expect(holding(all, PW2)).toEqual([]);
    // PW1 was sent once as a plain string on purpose (refused): it may rest in the proxy's files only until
    // that job ended; rows, logs and the server log never hold it.
    expect(holding(all, PW1).filter((k) => !k.startsWith('proxy.db'))).toEqual([]);
    // Every finished row lost its sealed box too.
    const rows = Object.fromEntries(Object.entries(all).filter(([k]) => k.startsWith('row')));
    expect(holding(rows, s1.sealed)).toEqual([]);
    expect(holding(rows, s2.sealed)).toEqual([]);
    for (const [, row] of Object.entries(rows)) expect(Object.keys(JSON.parse(JSON.parse(row.toString()).payload))).not.toContain('password');
  });
});
