/**
 * The agent side of bench/ldap.ts: a real integration-proxy and agent from
 * dist/ (SQLite store in a temp dir), one LDAP resource, listing jobs
 * enqueued over HTTP and awaited until they succeed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from '../spec/fixtures/net.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface AgentStack {
  /** Enqueues a listAccounts job on the LDAP resource and waits until it succeeded; CPU ms of each process during it. */
  listAccounts(): Promise<{ ms: number; records: number; agentCpuMs: number; proxyCpuMs: number }>;
  /** The agent process's peak RSS (VmHWM), last read while it ran. */
  agentPeakRssMb(): number;
  /** The integration-proxy's peak RSS (VmHWM), last read while it ran. */
  proxyPeakRssMb(): number;
  /** Its RSS once online and idle for `idleMs`, before any job: the baseline the listing adds to. */
  agentIdleRssMb: number;
  stop(): Promise<void>;
}

/** `BENCH_PROF_DIR=/tmp/prof`: the proxy and the agent write CPU profiles (.cpuprofile) there (as bench/sql-agent.ts). */
const PROF = process.env.BENCH_PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROF_DIR}`] : [];

function node(script: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess & { out: () => string } {
  const child = spawn(process.execPath, [...PROF, join(ROOT, script), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  return Object.assign(child, { out: () => out });
}

/** User + system CPU of a process so far, in ms (/proc/PID/stat, 100 ticks a second). */
function cpuMs(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return 0;
  }
}

async function stopChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise((r) => c.once('exit', r));
  c.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 10_000)))]);
  clearTimeout(timer);
  if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

export async function startAgentStack(resource: Record<string, unknown>, idleMs = 1000): Promise<AgentStack> {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-bench-ldap-'));
  const port = await freePort();
  const admin = `bench-admin-${process.pid}-${Date.now()}`;
  const proxyEnv = {
    PROXY_HOST: '127.0.0.1', PROXY_PORT: String(port), PROXY_STORE: `sqlite:${join(dir, 'proxy.db')}`, PROXY_ADMIN_TOKEN: admin, PROXY_LOG_LEVEL: 'warn',
  };
  const created = spawnSync(process.execPath, [join(ROOT, 'dist/bin/integration-proxy.js'), 'token', 'create', '--pool', 'bench'], {
    env: { ...process.env, ...proxyEnv },
    encoding: 'utf8',
  });
  if (created.status !== 0) throw new Error(`token create failed: ${created.stderr}`);
  const token = created.stdout.trim().split('\n').pop()!;
  const proxy = node('dist/bin/integration-proxy.js', ['start'], proxyEnv);
  const url = `http://127.0.0.1:${port}`;
  const api = async (method: string, path: string, body?: unknown): Promise<any> => {
    const r = await fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${admin}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
    return r.json();
  };
  const children: ChildProcess[] = [proxy];
  let peakMb = 0;
  let proxyPeakMb = 0;
  try {
    await waitFor(async () => (await fetch(`${url}/readyz`).catch(() => undefined))?.status === 200, 20_000, 50);
    const cfgFile = join(dir, 'agent.json');
    writeFileSync(
      cfgFile,
      JSON.stringify({
        proxy: { url, token, waitMs: 25_000 },
        concurrency: 2,
        shutdownGraceMs: 0,
        health: { host: '127.0.0.1', port: 0 },
        log: { level: 'warn', format: 'json' },
        resources: { dir: resource },
      }),
    );
    const agent = node('bin/agent', ['start', '--config', cfgFile], { AGENT_ID: 'bench-ldap' });
    children.push(agent);
    await waitFor(async () => {
      const list = (await api('GET', '/v1/agents?pool=bench')) as unknown;
      const agents = (Array.isArray(list) ? list : ((list as { agents?: unknown[] }).agents ?? [])) as Array<{ status: string }>;
      return agents.some((a) => a.status === 'online');
    }, 20_000, 100).catch((err: Error) => {
      throw new Error(`agent did not come online: ${err.message}\n${agent.out()}`);
    });
    // Idle on purpose: the RSS of an agent that has only polled for `idleMs` (issue 13 measures 60 s).
    await new Promise((r) => setTimeout(r, idleMs));
    const idleKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${agent.pid}/status`, 'utf8'))?.[1] ?? 0);
    const readPeak = () => {
      try {
        const kb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${agent.pid}/status`, 'utf8'))?.[1] ?? 0);
        peakMb = Math.max(peakMb, kb / 1024);
        const proxyKb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${proxy.pid}/status`, 'utf8'))?.[1] ?? 0);
        proxyPeakMb = Math.max(proxyPeakMb, proxyKb / 1024);
      } catch {
        // exited: keep the last reading
      }
      return peakMb;
    };
    return {
      async listAccounts() {
        const t0 = performance.now();
        const cpu0 = [cpuMs(agent.pid), cpuMs(proxy.pid)];
        const { id } = (await api('POST', '/v1/jobs', { pool: 'bench', type: 'listAccounts', resource: 'dir', payload: {} })) as { id: string };
        for (;;) {
          const job = (await api('GET', `/v1/jobs/${id}?waitMs=20000`)) as { status: string; result?: { records: number }; error?: unknown };
          if (job.status === 'succeeded') {
            readPeak();
            return {
              ms: performance.now() - t0,
              records: job.result!.records,
              agentCpuMs: cpuMs(agent.pid) - cpu0[0]!,
              proxyCpuMs: cpuMs(proxy.pid) - cpu0[1]!,
            };
          }
          if (job.status === 'failed' || job.status === 'cancelled') throw new Error(`job ${job.status}: ${JSON.stringify(job.error)}\n${agent.out()}`);
        }
      },
      agentPeakRssMb: readPeak,
      proxyPeakRssMb: () => (readPeak(), proxyPeakMb),
      agentIdleRssMb: idleKb / 1024,
      async stop() {
        readPeak();
        for (const c of children.reverse()) await stopChild(c);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    for (const c of children.reverse()) await stopChild(c);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
