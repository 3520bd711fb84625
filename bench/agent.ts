/**
 * Agent benchmark against a real integration-proxy process (SQLite in a temp dir):
 *   1. enqueue → job start latency on an idle agent (in-process agent, real HTTP);
 *   2. no-op jobs/s end to end: N `ping` jobs (delayMs 0) enqueued first, then
 *      2 agent processes × 32 concurrency; time from their start until all are done;
 *   3. failover after kill -9 (≈ TTL + reaper) and after SIGTERM (release → restart);
 *   4. idle agent RSS and requests per minute;
 *   5. the agent's own ceiling against a stub proxy (what the agent costs per job).
 *
 * CPU time per job (from /proc/PID/stat) is printed next to wall-clock rates: the machine's
 * cores are shared, so it is the figure to compare between runs. For a profile of the agent
 * processes: BENCH_AGENT_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" (written on SIGTERM).
 *
 *   npm run -s build && node dist/bench/agent.js [--jobs 20000] [--samples 300] [--idle-ms 30000] [--ttl-ms 2000] [--ceiling-only]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import got from 'got';
import Transport from 'winston-transport';
import { createLogger } from 'winston';
import { fromWinston } from '../lib/log/index.js';
import { agentConfigDefaults } from '../lib/config/agent.js';
import { createAgent } from '../lib/agent/agent.js';
import type { JobView } from '../lib/protocol/schemas.js';
import { vmHwmMb } from './sql-agent.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const JOBS = arg('jobs', 20_000);
const SAMPLES = arg('samples', 300);
const IDLE_MS = arg('idle-ms', 30_000);
const TTL_MS = arg('ttl-ms', 2000);
const REAPER_MS = 200;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** CPU time (user + system) a process has used so far, in ms, from /proc/PID/stat (clock ticks of 10 ms). */
function cpuMsOf(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}
const selfCpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
/** Extra node flags for agent processes, e.g. BENCH_AGENT_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof". */
const AGENT_NODE_ARGS = (process.env.BENCH_AGENT_NODE_ARGS ?? '').split(' ').filter(Boolean);

const children = new Set<ChildProcess>();
function spawnNode(script: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess & { out: () => string } {
  const nodeArgs = script.includes('agent') ? AGENT_NODE_ARGS : [];
  const child = spawn(process.execPath, [...nodeArgs, join(ROOT, script), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  children.add(child);
  child.once('exit', () => children.delete(child));
  return Object.assign(child, { out: () => out });
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 120_000, stepMs = 2): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('benchmark step timed out');
    await sleep(stepMs);
  }
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const fmt = (ms: number) => `${ms.toFixed(2)} ms`;

/** Captures the instant a `job started` debug line is emitted by the in-process agent. */
class StartTransport extends Transport {
  onStart: (jobId: string) => void = () => {};
  override log(info: Record<string, unknown>, next: () => void): void {
    if (info.message === 'job started') this.onStart(String(info.jobId));
    next();
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-bench-agent-'));
  const port = await freePort();
  const admin = `bench-admin-${Date.now()}-abcdef`;
  const proxyEnv = {
    PROXY_HOST: '127.0.0.1', PROXY_PORT: String(port), PROXY_STORE: `sqlite:${join(dir, 'proxy.db')}`, PROXY_ADMIN_TOKEN: admin,
    PROXY_LEASE_TTL_MS: String(TTL_MS), PROXY_REAPER_INTERVAL_MS: String(REAPER_MS), PROXY_LOG_LEVEL: 'warn',
  };
  const created = spawnSync(process.execPath, [join(ROOT, 'dist/bin/integration-proxy.js'), 'token', 'create', '--pool', 'bench'], { env: { ...process.env, ...proxyEnv }, encoding: 'utf8' });
  const token = created.stdout.trim().split('\n').pop()!;
  const proxyProc = spawnNode('dist/bin/integration-proxy.js', ['start'], proxyEnv);
  const url = `http://127.0.0.1:${port}`;
  const api = got.extend({ prefixUrl: url, headers: { authorization: `Bearer ${admin}` }, retry: { limit: 0 }, responseType: 'json' });
  await until(async () => (await api.get('readyz', { throwHttpErrors: false }).catch(() => ({ statusCode: 0 }))).statusCode === 200, 20_000, 50);
  const agentEnv = (id: string, concurrency = 32) => ({ AGENT_PROXY_URL: url, AGENT_TOKEN: token, AGENT_ID: id, AGENT_CONCURRENCY: String(concurrency), AGENT_HEALTH_HOST: '127.0.0.1', AGENT_HEALTH_PORT: '0', AGENT_SHUTDOWN_GRACE_MS: '0', AGENT_LOG_LEVEL: 'warn' });
  const enqueue = async (payload: unknown) => ((await api.post('v1/jobs', { json: { pool: 'bench', type: 'ping', payload } })).body as unknown as { id: string }).id;
  const job = async (id: string) => (await api.get(`v1/jobs/${id}`)).body as unknown as JobView;
  const queueEmpty = async () => {
    for (const status of ['queued', 'leased']) {
      const r = (await api.get(`v1/jobs?pool=bench&status=${status}&limit=1`)).body as unknown as { jobs: unknown[] };
      if (r.jobs.length > 0) return false;
    }
    return true;
  };

  // 1 + 4: in-process idle agent (latency, requests per minute) and an idle agent process (RSS).
  const transport = new StartTransport({ level: 'debug' });
  const log = createLogger({ level: 'debug', transports: [transport] });
  const agent = createAgent(
    { ...agentConfigDefaults(), proxy: { ...agentConfigDefaults().proxy, url, token, waitMs: 25_000 }, concurrency: 8, shutdownGraceMs: 0, health: { host: '127.0.0.1', port: 0 }, agentId: 'bench-idle', resources: {} },
    { log: fromWinston(log) },
  );
  const idleProc = spawnNode('bin/agent', ['start'], agentEnv('bench-idle-proc', 8));
  await agent.start();
  await sleep(500);
  const before = Object.values(agent.stats().requests).reduce((a, b) => a + b, 0);
  await sleep(IDLE_MS);
  const idleRequests = Object.values(agent.stats().requests).reduce((a, b) => a + b, 0) - before;
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${idleProc.pid}/status`, 'utf8'))?.[1] ?? 0);
  const startCpuMs = cpuMsOf(idleProc.pid);
  idleProc.kill('SIGTERM');
  console.log(
    `idle agent: RSS ${(rssKb / 1024).toFixed(1)} MB (process, after ${IDLE_MS / 1000} s idle); ${((idleRequests * 60_000) / IDLE_MS).toFixed(1)} requests/min (waitMs 25 s); CPU for start-up + idle: ${startCpuMs} ms`,
  );

  const latencies: number[] = [];
  const enqueueCalls: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    let startedAt = 0;
    transport.onStart = () => (startedAt = performance.now());
    const t0 = performance.now();
    await enqueue({});
    enqueueCalls.push(performance.now() - t0);
    await until(() => startedAt > 0, 10_000, 0);
    latencies.push(startedAt - t0);
    await sleep(2);
  }
  console.log(`enqueue → job start (idle agent, ${SAMPLES} jobs): p50 ${fmt(pct(latencies, 50))}, p99 ${fmt(pct(latencies, 99))}; of which the POST /v1/jobs call alone: p50 ${fmt(pct(enqueueCalls, 50))}, p99 ${fmt(pct(enqueueCalls, 99))}`);
  await agent.stop({ skipWait: true });

  // 2: throughput.
  for (let i = 0; i < JOBS; i += 1000) {
    const jobs = Array.from({ length: Math.min(1000, JOBS - i) }, () => ({ pool: 'bench', type: 'ping', payload: { delayMs: 0 } }));
    await api.post('v1/jobs/batch', { json: { jobs } });
  }
  const proxyPid = proxyProc.pid;
  const proxyCpu0 = cpuMsOf(proxyPid);
  const t0 = performance.now();
  const workers = new Map(['bench-a', 'bench-b'].map((id) => [id, spawnNode('bin/agent', ['start'], agentEnv(id))]));
  await until(queueEmpty, 600_000, 20);
  const seconds = (performance.now() - t0) / 1000;
  const agentsCpuMs = [...workers.values()].reduce((sum, w) => sum + cpuMsOf(w.pid), 0);
  const perJob = (ms: number) => `${Math.round((ms * 1000) / JOBS)} µs`;
  // Peak RSS of each agent process over the run (VmHWM): what the jobs made the heap grow to.
  const peaks = [...workers.values()].map((w) => vmHwmMb(w.pid!).toFixed(1));
  console.log(`throughput: ${JOBS} no-op jobs through 2 agents × 32 in ${seconds.toFixed(2)} s = ${Math.round(JOBS / seconds)} jobs/s (agent process start included); CPU per job: agents ${perJob(agentsCpuMs)} (start included; ${perJob(agentsCpuMs - 2 * startCpuMs)} without 2 start-ups as measured on the idle agent), proxy ${perJob(cpuMsOf(proxyPid) - proxyCpu0)}; agents' peak RSS ${peaks.join(' / ')} MB`);

  // 3: failover.
  for (const how of ['SIGKILL', 'SIGTERM'] as const) {
    const id = await enqueue({ delayMs: 30_000 });
    let first: JobView | undefined;
    await until(async () => (first = await job(id)).status === 'leased', 10_000);
    const victimId = first!.agentId!;
    const victim = workers.get(victimId)!;
    const tKill = performance.now();
    victim.kill(how);
    await until(async () => {
      const v = await job(id);
      return v.status === 'leased' && v.agentId !== first!.agentId;
    }, 60_000, 1);
    const ms = performance.now() - tKill;
    console.log(`failover after ${how === 'SIGKILL' ? 'kill -9' : 'SIGTERM'}: re-leased on the other agent after ${ms.toFixed(0)} ms (TTL ${TTL_MS} ms, reaper ${REAPER_MS} ms)`);
    await api.post(`v1/jobs/${id}/cancel`);
    // The replacement must be leasing again before the next round, so both agents are candidates.
    const replacement = spawnNode('bin/agent', ['start'], { ...agentEnv(victimId), AGENT_LOG_LEVEL: 'info' });
    workers.set(victimId, replacement);
    await until(() => replacement.out().includes('agent started'), 20_000, 20);
    await sleep(200);
  }

  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
  await agentCeiling();
}

/**
 * The agent's own ceiling: one agent process × 32 against a stub proxy (node:http in
 * this process) that answers every lease at once and accepts every result, so
 * only the agent's cost per job (and this stub's) is measured.
 */
async function agentCeiling(): Promise<void> {
  const total = JOBS;
  let leased = 0;
  let accepted = 0;
  const calls: Record<string, number> = {};
  const stub = createHttpServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const msg = JSON.parse(body || '{}') as { max?: number; results?: Array<{ jobId: string }>; leases?: unknown[] };
      let answer: unknown = {};
      calls[req.url!] = (calls[req.url!] ?? 0) + 1;
      if (req.url === '/v1/agent/lease') {
        const n = Math.min(msg.max ?? 1, total - leased);
        const jobs = Array.from({ length: n }, () => {
          const id = `j${leased++}`;
          return { id, type: 'ping', resource: null, payload: {}, attempt: 1, leaseToken: `${id}-lease-token-0123456789`, leaseTtlMs: 30_000, timeoutMs: 60_000 };
        });
        answer = { jobs };
      } else if (req.url === '/v1/agent/results') {
        accepted += msg.results!.length;
        answer = { results: msg.results!.map((r) => ({ jobId: r.jobId, status: 'accepted' })) };
      } else if (req.url === '/v1/agent/heartbeat') {
        answer = { leases: [] };
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer));
    });
  });
  await new Promise<void>((r) => stub.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(stub.address() as { port: number }).port}`;
  const proc = spawnNode('bin/agent', ['start'], { AGENT_PROXY_URL: url, AGENT_TOKEN: 'stub-token-0123456789', AGENT_ID: 'ceiling', AGENT_CONCURRENCY: '32', AGENT_HEALTH_HOST: '127.0.0.1', AGENT_HEALTH_PORT: '0', AGENT_LOG_LEVEL: 'warn' });
  await until(() => leased > 0, 20_000, 1);
  const t0 = performance.now();
  const cpu0 = cpuMsOf(proc.pid);
  const stubCpu0 = selfCpuMs();
  const from = accepted;
  await until(() => accepted >= total, 600_000, 5);
  const seconds = (performance.now() - t0) / 1000;
  const jobs = total - from;
  const agentUs = ((cpuMsOf(proc.pid) - cpu0) * 1000) / jobs;
  const stubUs = ((selfCpuMs() - stubCpu0) * 1000) / jobs;
  console.log(
    `agent ceiling: 1 agent process × 32 against a stub proxy: ${Math.round(jobs / seconds)} jobs/s; CPU per job: agent ${agentUs.toFixed(0)} µs, stub ${stubUs.toFixed(0)} µs (${total} jobs; calls: ${JSON.stringify(calls)})`,
  );
  // SIGTERM (not -9) so that a --cpu-prof agent writes its profile on the way out.
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await Promise.race([exited, sleep(5000)]);
  proc.kill('SIGKILL');
  stub.closeAllConnections();
  stub.close();
}

(process.argv.includes('--ceiling-only') ? agentCeiling() : main()).then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    for (const c of children) c.kill('SIGKILL');
    process.exit(1);
  },
);
