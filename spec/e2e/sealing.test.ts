import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JobView } from '../../lib/protocol/schemas.js';
import { waitFor } from '../fixtures/net.js';
import { ROOT, buildDist, spawnProcess, startProxyProcess, stopAll, type Proc, type ProxyProc } from '../fixtures/processes.js';

/**
 * Sealed secrets end to end: a real integration-proxy process on SQLite, a
 * real agent process (spec/fixtures/sealed-agent.mjs: the agent of dist/ with
 * a `vault` connector kind that serves setPassword), the real CLIs for
 * `agent keygen`, `integration-proxy pool set-key` and `agent seal`. The
 * plaintext is grepped for in the proxy's SQLite file and WAL, the proxy's and
 * the agent's output, every job row and result: before the job ends (the
 * store holds the sealed box only) and after (the box is wiped too).
 */
const SEALED_PW = 'Corr3ct-Horse-Battery-Staple-91x';
const LAX_PW = 'plain-but-allowed-Pw-4417';
let proxy: ProxyProc;
let agent: Proc;
let dir: string;
let received: string;
let publicKey: string;

function cli(bin: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}) {
  const r = spawnSync(join(ROOT, 'bin', bin), args, { cwd: ROOT, env: { ...process.env, ...opts.env }, input: opts.input, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  buildDist();
  dir = mkdtempSync(join(tmpdir(), 'outpost-e2e-sealing-'));
  received = join(dir, 'received');
  spawnSync('mkdir', [received]);
  proxy = await startProxyProcess({ env: { PROXY_LOG_LEVEL: 'debug' } });
  // The pool's key pair: private key to a 0600 file, public key on stdout.
  const keygen = cli('agent', ['keygen', '--out', join(dir, 'sealing.key')]);
  expect(keygen.status).toBe(0);
  publicKey = keygen.stdout.trim();
  expect(publicKey).toMatch(/^[A-Za-z0-9+/]{43}=$/);
  expect(statSync(join(dir, 'sealing.key')).mode & 0o777).toBe(0o600);
  expect(readFileSync(join(dir, 'sealing.key'), 'utf8')).not.toContain(publicKey);
  const setKey = cli('integration-proxy', ['pool', 'set-key', '--pool', proxy.pool, '--public-key', publicKey], {
    env: { PROXY_STORE: `sqlite:${join(proxy.dir, 'proxy.db')}` },
  });
  expect([setKey.status, setKey.stderr]).toEqual([0, '']);
  writeFileSync(join(dir, 'token'), `${proxy.agentToken}\n`);
  const config = {
    proxy: { url: proxy.url, tokenFile: join(dir, 'token'), waitMs: 3000 },
    sealing: { privateKeyFile: join(dir, 'sealing.key') },
    concurrency: 4,
    shutdownGraceMs: 1000,
    health: { host: '127.0.0.1', port: 0 },
    log: { level: 'debug', format: 'json' },
    resources: {
      vault: { kind: 'vault', receivedDir: received },
      lax: { kind: 'vault', receivedDir: received, allowUnsealedSecrets: true },
    },
  };
  writeFileSync(join(dir, 'agent.json'), JSON.stringify(config));
  agent = spawnProcess(process.execPath, [join(ROOT, 'spec/fixtures/sealed-agent.mjs')], {
    name: 'sealed-agent',
    env: { ...process.env, AGENT_CONFIG: join(dir, 'agent.json'), AGENT_ID: 'sealed-agent' },
  });
  await agent.waitForLine(/"agent started"/);
}, 90_000);

afterAll(async () => {
  await stopAll();
  await proxy?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function enqueue(job: Record<string, unknown>): Promise<string> {
  return (await proxy.call<{ id: string }>('POST', '/v1/jobs', { pool: proxy.pool, maxAttempts: 1, ...job })).id;
}
async function finished(id: string): Promise<JobView> {
  let view: JobView | undefined;
  await waitFor(async () => {
    view = await proxy.call<JobView>('GET', `/v1/jobs/${id}?waitMs=5000`);
    return view.status === 'succeeded' || view.status === 'failed';
  }, 30_000, 10);
  return view!;
}
/** Everything the grep test looks at: the store's files, both processes' output, every job row and result. */
async function everything(): Promise<Record<string, Buffer>> {
  const db = join(proxy.dir, 'proxy.db');
  const out: Record<string, Buffer> = {
    'proxy.db': readFileSync(db),
    'proxy output': Buffer.from(proxy.proc.output()),
    'agent output': Buffer.from(agent.output()),
  };
  if (existsSync(`${db}-wal`)) out['proxy.db-wal'] = readFileSync(`${db}-wal`);
  // Every job row as stored (payload, result, error), read beside the running proxy.
  const conn = new Database(db, { readonly: true, fileMustExist: true });
  try {
    for (const row of conn.prepare('SELECT * FROM outpost_jobs').all() as Array<{ id: string }>) out[`row ${row.id}`] = Buffer.from(JSON.stringify(row));
  } finally {
    conn.close();
  }
  const list = await proxy.call<{ jobs: JobView[] }>('GET', `/v1/jobs?pool=${proxy.pool}&limit=1000`);
  out['job list'] = Buffer.from(JSON.stringify(list));
  for (const j of list.jobs) out[`job ${j.id}`] = Buffer.from(JSON.stringify(await proxy.call('GET', `/v1/jobs/${j.id}`)));
  return out;
}
function holding(where: Record<string, Buffer>, needle: string): string[] {
  return Object.entries(where).filter(([, b]) => b.includes(Buffer.from(needle))).map(([k]) => k);
}

describe('sealed secrets through a real proxy and agent', () => {
  it('the job side gets the key (viewer or admin) and seals from stdin with bin/agent seal', async () => {
    const key = await proxy.call<{ pool: string; publicKey: string; algorithm: string }>('GET', `/v1/pools/${proxy.pool}/key`);
    expect(key).toMatchObject({ pool: proxy.pool, publicKey, algorithm: 'x25519-xsalsa20-poly1305-sealedbox' });
    const viewer = cli('integration-proxy', ['token', 'create', '--pool', proxy.pool, '--role', 'viewer'], { env: { PROXY_STORE: `sqlite:${join(proxy.dir, 'proxy.db')}` } });
    const viewerToken = viewer.stdout.trim().split('\n').pop()!;
    const fetched = cli('agent', ['seal', '--proxy', proxy.url, '--pool', proxy.pool], { env: { OUTPOST_TOKEN: viewerToken }, input: `${SEALED_PW}\n` });
    expect([fetched.status, fetched.stderr]).toEqual([0, '']);
    expect(JSON.parse(fetched.stdout)).toEqual({ sealed: expect.stringMatching(/^[A-Za-z0-9+/]+=*$/) });
    expect(fetched.stdout).not.toContain(SEALED_PW);
    // argv never carries the secret: a stray positional is refused.
    expect(cli('agent', ['seal', '--public-key', publicKey, SEALED_PW], { input: 'x' }).status).toBe(64);
    expect(cli('agent', ['seal', '--proxy', proxy.url, '--pool', proxy.pool], { env: { OUTPOST_TOKEN: proxy.agentToken }, input: 'x' }).status).toBe(1);
  });

  it('opens a sealed setPassword in memory: the plaintext is nowhere, before or after the job ends', async () => {
    const sealed = JSON.parse(cli('agent', ['seal', '--public-key', publicKey], { input: SEALED_PW }).stdout) as { sealed: string };
    const id = await enqueue({ type: 'setPassword', resource: 'vault', payload: { accountId: 'hold', password: sealed, mustChange: true } });
    // Before: the job is running on the agent (it holds); the store has the sealed box only.
    await waitFor(async () => existsSync(join(received, 'hold')), 20_000, 10);
    expect(readFileSync(join(received, 'hold'), 'utf8')).toBe(SEALED_PW);
    expect((await proxy.call<JobView>('GET', `/v1/jobs/${id}`)).status).toBe('leased');
    const before = await everything();
    expect(holding(before, SEALED_PW)).toEqual([]);
    expect(holding(before, sealed.sealed)).toEqual(expect.arrayContaining([`row ${id}`]));
    expect(holding(before, sealed.sealed).filter((k) => k.startsWith('job') || k.endsWith('output'))).toEqual([]);
    // The careless connector's log line reached the agent's log redacted.
    expect(agent.output()).toMatch(/setting the password of hold to \[REDACTED\]/);

    writeFileSync(join(received, 'release'), '');
    const view = await finished(id);
    expect(view.status).toBe('succeeded');
    expect(view.result).toEqual({ changed: true });
    const after = await everything();
    expect(holding(after, SEALED_PW)).toEqual([]);
    expect(JSON.parse(after[`row ${id}`]!.toString()).payload).toBe('{"accountId":"hold","mustChange":true}');
    const rows = Object.entries(after).filter(([k]) => k.startsWith('job') || k.startsWith('row') || k.endsWith('output'));
    expect(holding(Object.fromEntries(rows), sealed.sealed)).toEqual([]);
  });

  it('refuses a box for another key and a plain string on a strict resource; takes a plain string where allowed and wipes it', async () => {
    const other = cli('agent', ['keygen', '--out', join(dir, 'other.key')]).stdout.trim();
    const foreign = JSON.parse(cli('agent', ['seal', '--public-key', other], { input: SEALED_PW }).stdout) as { sealed: string };
    const bad = await finished(await enqueue({ type: 'setPassword', resource: 'vault', payload: { accountId: 'u-foreign', password: foreign } }));
    expect(bad.status).toBe('failed');
    expect(bad.error).toEqual({ code: 'invalid_request', message: "password: the sealed value does not open with this pool's key", retryable: false });
    const plain = await finished(await enqueue({ type: 'setPassword', resource: 'vault', payload: { accountId: 'u-plain', password: LAX_PW } }));
    expect([plain.status, plain.error?.code]).toEqual(['failed', 'invalid_request']);
    expect(plain.error?.message).toMatch(/^password: a plain-string secret is refused/);
    expect(existsSync(join(received, 'u-foreign')) || existsSync(join(received, 'u-plain'))).toBe(false);

    const lax = await finished(await enqueue({ type: 'createAccount', resource: 'lax', payload: { account: { name: 'u-lax' }, password: LAX_PW } }));
    expect([lax.status, lax.result]).toEqual(['succeeded', { changed: true, accountId: 'u-lax' }]);
    expect(readFileSync(join(received, 'u-lax'), 'utf8')).toBe(LAX_PW);
    const after = await everything();
    expect(holding(after, SEALED_PW)).toEqual([]);
    // Rows, results and logs lose the allowed plain string too (the SQLite file is looked at in the note: old page images).
    expect(holding(after, LAX_PW).filter((k) => !k.startsWith('proxy.db'))).toEqual([]);
    process.stdout.write(`allowed plain string still in the SQLite files after the job: ${JSON.stringify(holding(after, LAX_PW))}\n`);
  });
});
