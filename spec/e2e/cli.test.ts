import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from '../fixtures/net.js';
import { ROOT, buildDist, startAgentProcess, startProxyProcess, stopAll, type ProxyProc } from '../fixtures/processes.js';

/** `bin/agent` as a user runs it: exit codes, messages, `check`, health endpoints. */
let proxy: ProxyProc;
let dir: string;
const TOKEN = 'cli-test-token-that-must-not-print';

beforeAll(async () => {
  buildDist();
  dir = mkdtempSync(join(tmpdir(), 'outpost-e2e-cli-'));
  proxy = await startProxyProcess();
}, 90_000);
afterAll(async () => {
  await stopAll();
  await proxy?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function agent(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(join(ROOT, 'bin/agent'), args, {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 30_000,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('bin/agent', () => {
  it('version prints the version', () => {
    const r = agent(['version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('an unknown command exits non-zero with the usage', () => {
    const r = agent(['frobnicate']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('usage: agent');
  });

  it.each([
    ['no proxy.url', { AGENT_TOKEN: TOKEN }, 'proxy.url'],
    ['a bad concurrency', { AGENT_PROXY_URL: 'http://127.0.0.1:1', AGENT_TOKEN: TOKEN, AGENT_CONCURRENCY: 'lots' }, 'concurrency'],
    ['no token', { AGENT_PROXY_URL: 'http://127.0.0.1:1' }, 'proxy.token'],
    ['a missing token file', { AGENT_PROXY_URL: 'http://127.0.0.1:1', AGENT_TOKEN_FILE: '/nonexistent/token' }, 'proxy.tokenFile'],
  ])('start with %s exits non-zero naming the key', (_what, env, key) => {
    const r = agent(['start'], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(key);
    expect(r.stderr + r.stdout).not.toContain(TOKEN);
  });

  it('start with an unknown key or a bad resource in the config file names it', () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ proxy: { url: 'http://127.0.0.1:1', token: TOKEN, colour: 'blue' } }));
    const unknown = agent(['start', '--config', file]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('proxy.colour');
    writeFileSync(file, JSON.stringify({ proxy: { url: 'http://127.0.0.1:1', token: TOKEN }, resources: { 'hr-db': { kind: 'nosuchkind' } } }));
    const resource = agent(['start'], { AGENT_CONFIG: file });
    expect(resource.code).toBe(2);
    expect(resource.stderr).toContain('resources.hr-db.kind');
    expect(resource.stderr + unknown.stderr).not.toContain(TOKEN);
  });

  it('check passes against a reachable proxy with a good token', () => {
    const r = agent(['check'], { AGENT_PROXY_URL: proxy.url, AGENT_TOKEN: proxy.agentToken });
    expect(r.stdout).toMatch(/proxy http:\/\/127\.0\.0\.1:\d+\s+ok/);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain(proxy.agentToken);
  });

  it('check fails with a table line for a wrong token and for an unreachable proxy', async () => {
    const bad = agent(['check'], { AGENT_PROXY_URL: proxy.url, AGENT_TOKEN: TOKEN });
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/FAIL.*unauthorized/);
    expect(bad.stdout).not.toContain(TOKEN);
    const down = agent(['check'], { AGENT_PROXY_URL: `http://127.0.0.1:${await freePort()}`, AGENT_TOKEN: TOKEN });
    expect(down.code).toBe(1);
    expect(down.stdout).toMatch(/FAIL.*unavailable/);
  });

  it('check --json: rows with level and hint for automation; warnings alone exit 0', () => {
    const tokenFile = join(dir, 'token-0644');
    writeFileSync(tokenFile, proxy.agentToken, { mode: 0o644 });
    chmodSync(tokenFile, 0o644);
    const r = agent(['check', '--json'], { AGENT_PROXY_URL: proxy.url, AGENT_TOKEN_FILE: tokenFile });
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.stdout) as Array<{ target: string; ok: boolean; level: string; latencyMs: number; detail: string; hint?: string }>;
    expect(rows.map((x) => [x.target, x.level])).toEqual([
      ['config', 'ok'],
      ['proxy.tokenFile', 'warn'],
      [`proxy ${proxy.url}`, 'ok'],
      ['config resources', 'ok'],
    ]);
    expect(rows[1]!.hint).toContain('chmod 600');
    expect(r.stdout).not.toContain(proxy.agentToken);
    // The table says the same, with a `fix:` line under the warning.
    const table = agent(['check'], { AGENT_PROXY_URL: proxy.url, AGENT_TOKEN_FILE: tokenFile });
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/proxy\.tokenFile\s+WARN\s+0ms\s+.*mode 0644/);
    expect(table.stdout).toMatch(/fix: chmod 600 /);
  });

  it('check on http:// to a non-loopback host: a WARN row (token in clear) and a FAIL row, exit 1', () => {
    const r = agent(['check', '--json'], { AGENT_PROXY_URL: 'http://proxy.example.com', AGENT_TOKEN: TOKEN });
    expect(r.code).toBe(1);
    const rows = JSON.parse(r.stdout) as Array<{ target: string; level: string; detail: string }>;
    expect(rows.find((x) => x.target === 'proxy.url')).toMatchObject({ level: 'warn', detail: expect.stringContaining('in clear') });
    expect(rows.find((x) => x.target === 'proxy http://proxy.example.com')).toMatchObject({ level: 'fail' });
    expect(r.stdout).not.toContain(TOKEN);
  });

  it('start with AGENT_LOG_FILE and the pretty format: pretty on the console, JSON without ANSI in the file', async () => {
    const logFile = join(dir, 'logs', 'agent.log');
    const a = startAgentProcess('logfile', {
      AGENT_PROXY_URL: proxy.url, AGENT_TOKEN: proxy.agentToken, AGENT_WAIT_MS: '1000', AGENT_LOG_FORMAT: 'pretty', AGENT_LOG_FILE: logFile, FORCE_COLOR: '1',
    });
    await a.waitForLine(/ agent started /);
    await a.stop('SIGTERM');
    const lines = readFileSync(logFile, 'utf8').split('\n').filter(Boolean);
    expect(readFileSync(logFile, 'utf8')).not.toContain('\u001b');
    expect(lines.map((l) => (JSON.parse(l) as { message: string }).message)).toEqual(expect.arrayContaining(['agent started', 'stopped']));
    expect(readFileSync(logFile, 'utf8')).not.toContain(proxy.agentToken);
  });

  it('serves /healthz, /readyz and /metrics, and SIGINT drains and exits 0', async () => {
    const a = startAgentProcess('health', { AGENT_PROXY_URL: proxy.url, AGENT_TOKEN: proxy.agentToken, AGENT_WAIT_MS: '1000' });
    const line = JSON.parse(await a.waitForLine(/"agent started"/)) as { healthPort: number; route: string };
    // Which path the calls take: `direct` here, `via forward proxy HOST:PORT` behind HTTPS_PROXY.
    expect(line.route).toBe('direct');
    const base = `http://127.0.0.1:${line.healthPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200);
    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('outpost_agent_polls_total');
    a.child.kill('SIGINT');
    expect(await a.exited).toBe(0);
    expect(a.output()).toContain('"stopped"');
  }, 30_000);

  it('a wrong token is logged as unauthorized and retried with backoff; the agent does not exit', async () => {
    const a = startAgentProcess('bad-token', { AGENT_PROXY_URL: proxy.url, AGENT_TOKEN: TOKEN });
    const line = JSON.parse(await a.waitForLine(/"lease request failed"/)) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 'error', code: 'unauthorized' });
    await new Promise((r) => setTimeout(r, 1500));
    expect(a.child.exitCode).toBeNull();
    expect(a.jsonLines().filter((l) => l.message === 'lease request failed').length).toBeLessThan(10);
    expect(await a.stop()).toBe(0);
    expect(a.output()).not.toContain(TOKEN);
  }, 30_000);

  it('is not ready while the proxy cannot be reached', async () => {
    const a = startAgentProcess('unready', { AGENT_PROXY_URL: `http://127.0.0.1:${await freePort()}`, AGENT_TOKEN: TOKEN });
    const line = JSON.parse(await a.waitForLine(/"agent started"/)) as { healthPort: number };
    const base = `http://127.0.0.1:${line.healthPort}`;
    await a.waitForLine(/lease request failed/);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(503);
    expect(await a.stop()).toBe(0);
    expect(a.output()).not.toContain(TOKEN);
  }, 30_000);
});

/** `bin/integration-proxy token …` against the running proxy's SQLite file, from another process. */
describe('bin/integration-proxy token', () => {
  const env = () => ({ PROXY_STORE: `sqlite:${join(proxy.dir, 'proxy.db')}` });
  function tokenCli(args: string[]) {
    const r = spawnSync(join(ROOT, 'bin/integration-proxy'), ['token', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 30_000, env: { PATH: process.env.PATH, ...env() } });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  }
  function create(args: string[]): { id: string; token: string; header: string } {
    const r = tokenCli(['create', ...args]);
    expect(r.code).toBe(0);
    const [header, token] = r.stdout.trimEnd().split('\n');
    return { id: /(tok_[0-9a-f]{12})/.exec(header!)![1]!, token: token!, header: header! };
  }
  const lease = (token: string) =>
    fetch(`${proxy.url}/v1/agent/lease`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ agentId: 'cli-test', hostname: 'h', version: '0.1.0', resources: [], max: 1, waitMs: 0 }),
    }).then((r) => r.status);
  /** Milliseconds from `sinceMs` until `token` is refused (401) on the running proxy. */
  async function refusedAfter(token: string, sinceMs: number): Promise<number> {
    await waitFor(async () => (await lease(token)) === 401, 5000, 10);
    return Date.now() - sinceMs;
  }

  it('create with a role and an expiry; list shows id, pool, role, created, last used, expires and never a secret or hash', async () => {
    const agentTok = create(['--pool', proxy.pool]);
    expect(agentTok.header).toMatch(/^agent token tok_[0-9a-f]{12} for pool e2e \(never expires;/);
    const viewerTok = create(['--pool', proxy.pool, '--role', 'viewer', '--expires', '30d']);
    expect(viewerTok.header).toMatch(/^viewer token .* \(expires \d{4}-\d{2}-\d{2}T/);
    const adminTok = create(['--pool', proxy.pool, '--admin']);
    expect(adminTok.header).toMatch(/^admin token /);
    expect(await lease(agentTok.token)).toBe(200);
    // Roles: a viewer reads, cannot enqueue or lease; an admin cannot lease.
    const get = (token: string, path: string, init: RequestInit = {}) =>
      fetch(proxy.url + path, { ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } }).then((r) => r.status);
    expect(await get(viewerTok.token, '/v1/jobs')).toBe(200);
    expect(await get(viewerTok.token, '/v1/jobs', { method: 'POST', body: JSON.stringify({ type: 'ping' }) })).toBe(403);
    expect(await lease(viewerTok.token)).toBe(403);
    expect(await lease(adminTok.token)).toBe(403);
    expect(await get(adminTok.token, '/v1/jobs', { method: 'POST', body: JSON.stringify({ type: 'ping' }) })).toBe(201);

    const list = tokenCli(['list', '--pool', proxy.pool]);
    expect(list.code).toBe(0);
    expect(list.stdout.split('\n')[0]).toMatch(/^ID\s+POOL\s+ROLE\s+CREATED\s+LAST USED\s+EXPIRES\s+STATUS$/);
    const row = list.stdout.split('\n').find((l) => l.startsWith(agentTok.id))!;
    expect(row).toMatch(/^tok_[0-9a-f]{12}\s+e2e\s+agent\s+\d{4}-\d\d-\d\dT\S+Z\s+\d{4}-\d\d-\d\dT\S+Z\s+never\s+active$/);
    const json = JSON.parse(tokenCli(['list', '--json']).stdout) as Array<Record<string, unknown>>;
    expect(json.find((x) => x.id === viewerTok.id)).toMatchObject({ pool: proxy.pool, role: 'viewer', status: 'active', revokedAt: null });
    const printed = list.stdout + tokenCli(['list', '--json']).stdout;
    for (const t of [agentTok.token, viewerTok.token, adminTok.token, proxy.agentToken]) {
      expect(printed).not.toContain(t);
      expect(printed).not.toContain(createHash('sha256').update(t).digest('hex'));
      expect(printed).not.toContain(createHash('sha256').update(t).digest('hex').slice(0, 12));
    }
  });

  it('revoke from another process: the running proxy refuses the token within 1 s', async () => {
    const { id, token } = create(['--pool', proxy.pool]);
    expect(await lease(token)).toBe(200);
    const r = tokenCli(['revoke', id]);
    const revokedAt = Date.now();
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`token ${id} revoked`);
    expect(await refusedAfter(token, revokedAt)).toBeLessThan(1000);
    expect(tokenCli(['list', '--pool', proxy.pool]).stdout.split('\n').find((l) => l.startsWith(id))).toMatch(/revoked$/);
    expect(tokenCli(['revoke', id]).stdout).toContain('already revoked');
    // The pool's other tokens still work.
    expect(await lease(proxy.agentToken)).toBe(200);
  });

  it('an expiring token is refused within 1 s of its expiry', async () => {
    // 8 s: the CLI calls below start Node processes, which take seconds on a loaded CI machine.
    const { id, token } = create(['--pool', proxy.pool, '--expires', '8s']);
    expect(await lease(token)).toBe(200);
    const listed = (JSON.parse(tokenCli(['list', '--json']).stdout) as Array<{ id: string; expiresAt: string }>).find((x) => x.id === id)!;
    const expiresAt = Date.parse(listed.expiresAt);
    await waitFor(() => Date.now() >= expiresAt - 300, 10_000, 50);
    expect(await refusedAfter(token, expiresAt)).toBeLessThan(1000);
  });

  it('bad arguments exit non-zero without echoing a secret; an unknown id exits 1', () => {
    const secret = create(['--pool', proxy.pool]).token;
    const pasted = tokenCli(['revoke', secret]);
    expect(pasted.code).toBe(2);
    expect(pasted.stderr).toContain('not its id');
    expect(pasted.stderr + pasted.stdout).not.toContain(secret);
    expect(tokenCli(['revoke', 'tok_000000000000']).code).toBe(1);
    expect(tokenCli(['create', '--pool', proxy.pool, '--role', 'root']).stderr).toContain('--role');
    expect(tokenCli(['create', '--pool', proxy.pool, '--role', 'viewer', '--admin']).code).toBe(2);
    expect(tokenCli(['create', '--pool', proxy.pool, '--expires', 'yesterday']).stderr).toContain('--expires');
    expect(tokenCli(['frobnicate']).code).toBe(2);
  });
});

