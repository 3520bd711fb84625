import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import type { JobView } from '../../lib/protocol/schemas.js';
import { freePort, waitFor } from '../fixtures/net.js';
import { ROOT, buildDist, spawnProcess, startProxyProcess, stopAll, type Proc, type ProxyProc } from '../fixtures/processes.js';

/**
 * Signals from the first moment, and a closed stdout, with the real
 * binaries: `bin/agent start | head -1` keeps serving and drains on SIGTERM;
 * SIGTERM while either binary is still loading exits 0.
 *
 * "Start" is when Node has booted and starts loading the program (a preload,
 * spec/fixtures/booted.mjs, says so on stderr); the shims install their
 * handlers first thing after that. Before it, Node itself is booting (45–175 ms
 * on a loaded test machine) and its own handler ends the process on a signal:
 * no JavaScript can run there.
 */
const NO_PROXY_ENV = { HTTPS_PROXY: '', https_proxy: '', HTTP_PROXY: '', http_proxy: '', NO_PROXY: '', no_proxy: '' };
let proxy: ProxyProc;
let dir: string;

beforeAll(async () => {
  buildDist();
  dir = mkdtempSync(join(tmpdir(), 'outpost-e2e-signals-'));
  proxy = await startProxyProcess();
}, 90_000);

afterAll(async () => {
  await stopAll();
  await proxy?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function agentEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    ...NO_PROXY_ENV,
    AGENT_PROXY_URL: proxy.url,
    AGENT_TOKEN: proxy.agentToken,
    AGENT_WAIT_MS: '1000',
    AGENT_SHUTDOWN_GRACE_MS: '2000',
    AGENT_HEALTH_HOST: '127.0.0.1',
    AGENT_HEALTH_PORT: '0',
    ...extra,
  };
}

const BOOTED = pathToFileURL(join(ROOT, 'spec/fixtures/booted.mjs')).href;

/** Spawns a binary with the boot marker preloaded. */
function spawnBooting(bin: string, name: string, env: NodeJS.ProcessEnv): Proc {
  return spawnProcess(join(ROOT, bin), ['start'], { name, env: { ...env, NODE_OPTIONS: `${env.NODE_OPTIONS ?? ''} --import=${BOOTED}`.trim() } });
}

async function sigtermAfter(p: Proc, delayMs: number): Promise<number | string> {
  await p.waitForLine(/^\[signals caught\]$/, 10_000);
  await new Promise((r) => setTimeout(r, delayMs));
  p.child.kill('SIGTERM');
  return p.exited;
}

function healthz(port: number): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/healthz', timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(0));
    req.end();
  });
}

async function ping(): Promise<JobView> {
  const { id } = await proxy.call<{ id: string }>('POST', '/v1/jobs', { pool: proxy.pool, type: 'ping', payload: {} });
  let view: JobView | undefined;
  await waitFor(async () => {
    view = await proxy.call<JobView>('GET', `/v1/jobs/${id}?waitMs=2000`);
    return ['succeeded', 'failed'].includes(view.status);
  }, 20_000, 0);
  return view!;
}

/** CPU seconds (user + system) the process has used so far. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

describe('signals and a closed stdout', () => {
  it('`bin/agent start | head -1`: keeps serving /healthz and jobs with stdout closed, SIGTERM → exit 0', async () => {
    const port = await freePort();
    const bin = join(ROOT, 'bin/agent');
    const sh = spawn('bash', ['-c', `{ "${bin}" start & echo "pid $!" >&2; wait $!; echo "exit $?" >&2; } | head -1`], {
      cwd: ROOT,
      env: agentEnv({ AGENT_HEALTH_PORT: String(port), AGENT_LOG_LEVEL: 'debug', AGENT_ID: 'head-agent' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    sh.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    sh.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const shExited = new Promise((r) => sh.once('exit', r));
    try {
      await waitFor(() => /^pid \d+$/m.test(err), 10_000);
      const pid = Number(/^pid (\d+)$/m.exec(err)![1]);
      // head printed one line and exited: from now on every write to the agent's stdout fails (EPIPE).
      await waitFor(() => out.split('\n').filter(Boolean).length === 1 && (healthz(port), true), 15_000);
      await waitFor(async () => (await healthz(port)) === 200, 15_000, 50);
      // Jobs make the agent log (debug) into the closed pipe; they still run.
      const jobs = await Promise.all([ping(), ping(), ping()]);
      expect(jobs.map((j) => j.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
      const cpu0 = cpuSeconds(pid);
      const answers = await Promise.all(Array.from({ length: 10 }, () => healthz(port)));
      expect(answers).toEqual(Array(10).fill(200));
      await new Promise((r) => setTimeout(r, 1000));
      const cpuPerSecond = cpuSeconds(pid) - cpu0;
      process.stdout.write(`[measure] agent CPU with stdout closed: ${cpuPerSecond.toFixed(2)} s over ~1 s\n`);
      // The logger fell back to stderr once and said so.
      expect(err).toContain('log output failed; writing to the next stream');
      process.kill(pid, 'SIGTERM');
      await waitFor(() => /^exit \d+$/m.test(err), 15_000);
      expect(/^exit (\d+)$/m.exec(err)![1]).toBe('0');
    } finally {
      sh.kill('SIGKILL');
      await shExited;
    }
  }, 60_000);

  it.each([50, 100, 300])('bin/agent: SIGTERM %i ms after its first handler, while it loads → exit 0', async (delayMs) => {
    const p = spawnBooting('bin/agent', `agent-early-${delayMs}`, agentEnv({ AGENT_ID: `early-${delayMs}` }));
    expect(await sigtermAfter(p, delayMs)).toBe(0);
  }, 30_000);

  it('bin/agent: SIGTERM once started drains and exits 0; a second signal skips the grace', async () => {
    const p = spawnProcess(join(ROOT, 'bin/agent'), ['start'], { name: 'agent-twice', env: agentEnv({ AGENT_ID: 'twice', AGENT_SHUTDOWN_GRACE_MS: '60000' }) });
    await p.waitForLine(/"agent started"/);
    const { id } = await proxy.call<{ id: string }>('POST', '/v1/jobs', { pool: proxy.pool, type: 'ping', payload: { delayMs: 30_000 } });
    await waitFor(async () => (await proxy.call<JobView>('GET', `/v1/jobs/${id}`)).status === 'leased', 15_000, 50);
    p.child.kill('SIGTERM');
    await p.waitForLine(/received SIGTERM"/);
    p.child.kill('SIGTERM');
    // Without the second signal this would wait for the 60 s grace (the test's timeout is lower).
    expect(await p.exited).toBe(0);
    expect(p.output()).toContain('skipping the grace period');
  }, 30_000);

  it.each([50, 100, 300, 1000])('bin/integration-proxy: SIGTERM %i ms after its first handler, while it loads → exit 0', async (delayMs) => {
    const port = await freePort();
    const env = {
      ...process.env,
      PROXY_HOST: '127.0.0.1',
      PROXY_PORT: String(port),
      PROXY_STORE: `sqlite:${join(dir, `early-${delayMs}.db`)}`,
      PROXY_ADMIN_TOKEN: 'admin-token-for-signal-tests-0123456789',
    };
    const p = spawnBooting('bin/integration-proxy', `proxy-early-${delayMs}`, env);
    expect(await sigtermAfter(p, delayMs)).toBe(0);
  }, 30_000);

  it('prints fixed error messages intact: no credential pattern mangles them', () => {
    const p = spawnSync(join(ROOT, 'bin/integration-proxy'), ['start'], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, PROXY_ADMIN_TOKEN: 'short', PROXY_STORE: `sqlite:${join(dir, 'never.db')}` },
    });
    expect(p.stderr).toContain('adminToken: must be at least 16 characters');
    const missing = join(dir, 'missing-token');
    const a = spawnSync(join(ROOT, 'bin/agent'), ['start'], { cwd: ROOT, encoding: 'utf8', env: agentEnv({ AGENT_TOKEN: '', AGENT_TOKEN_FILE: missing }) });
    expect(a.stderr).toContain(`cannot read proxy.tokenFile file ${missing}: ENOENT`);
    expect(`${p.stderr}${a.stderr}`).not.toContain('[REDACTED]');
  }, 30_000);
});

