import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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

  it('serves /healthz, /readyz and /metrics, and SIGINT drains and exits 0', async () => {
    const a = startAgentProcess('health', { AGENT_PROXY_URL: proxy.url, AGENT_TOKEN: proxy.agentToken, AGENT_WAIT_MS: '1000' });
    const line = JSON.parse(await a.waitForLine(/"agent started"/)) as { healthPort: number };
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
