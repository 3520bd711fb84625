/**
 * One end-to-end listing for bench/sql.ts: a real integration-proxy (SQLite
 * store in a temp dir) and a real agent from dist/bin, one `listAccounts` job
 * on the given SQL resource, timed from enqueue until every output record has
 * been read back (`GET /v1/jobs/{id}/output`). The agent's peak RSS is its
 * VmHWM, read from /proc just before it is stopped.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from '../spec/fixtures/net.js';

export interface AgentRunResult {
  ms: number;
  /** Of `ms`, enqueue → the job seen succeeded (the rest is reading the output back). */
  jobMs: number;
  records: number;
  agentMaxRssMb: number;
  /** The integration-proxy's peak RSS (VmHWM), read once the output was read back. */
  proxyMaxRssMb: number;
}

const BIN = join(fileURLToPath(import.meta.url), '..', '..', 'bin');
/** The shipped agent: the bin/agent shim, which runs the bundle in dist/agent/. */
const AGENT_SHIM = join(BIN, '..', '..', 'bin', 'agent');
/** `BENCH_PROF_DIR=/tmp/prof`: the proxy and the agent write CPU profiles (.cpuprofile) there. */
const PROF = process.env.BENCH_PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROF_DIR}`] : [];

function http(method: string, url: string, token: string, body?: unknown): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** Counts NDJSON lines of the output without holding them. */
function countOutput(url: string, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    request(url, { headers: { authorization: `Bearer ${token}` } }, (res) => {
      let n = 0;
      res.on('data', (c: Buffer) => {
        for (const b of c) if (b === 10) n++;
      });
      res.on('end', () => resolve(n));
      res.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
}

/** A process's peak RSS so far (VmHWM from /proc), in MB. */
export function vmHwmMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
  if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
}

export async function agentRun(resource: Record<string, unknown>, dir: string, expected: number): Promise<AgentRunResult> {
  const port = await freePort();
  const admin = `admin-${randomBytes(12).toString('hex')}`;
  const base = `http://127.0.0.1:${port}`;
  const store = `sqlite:${join(dir, `proxy-${port}.db`)}`;
  const proxyEnv = { ...process.env, PROXY_HOST: '127.0.0.1', PROXY_PORT: String(port), PROXY_STORE: store, PROXY_ADMIN_TOKEN: admin, PROXY_LOG_LEVEL: 'warn' };
  const token = spawnSync(process.execPath, [join(BIN, 'integration-proxy.js'), 'token', 'create', '--pool', 'bench'], { env: proxyEnv, encoding: 'utf8' });
  if (token.status !== 0) throw new Error(`token create failed: ${token.stderr.slice(-500)}`);
  const agentToken = token.stdout.trim().split('\n').pop()!;
  const proxy = spawn(process.execPath, [...PROF, join(BIN, 'integration-proxy.js'), 'start'], { env: proxyEnv, stdio: ['ignore', 'ignore', 'inherit'] });
  let agent: ChildProcess | undefined;
  try {
    await waitFor(async () => (await http('GET', `${base}/readyz`, admin).catch(() => ({ status: 0 }))).status === 200, 15_000, 50);
    const cfgFile = join(dir, `agent-${port}.json`);
    writeFileSync(cfgFile, JSON.stringify({ resources: { bench: resource } }));
    agent = spawn(process.execPath, [...PROF, AGENT_SHIM, 'start', '--config', cfgFile], {
      env: {
        ...process.env,
        AGENT_PROXY_URL: base,
        AGENT_TOKEN: agentToken,
        AGENT_HEALTH_HOST: '127.0.0.1',
        AGENT_HEALTH_PORT: '0',
        AGENT_WAIT_MS: '5000',
        AGENT_LOG_LEVEL: 'warn',
        AGENT_ID: 'bench-agent',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    await waitFor(async () => {
      const r = await http('GET', `${base}/v1/agents?pool=bench`, admin);
      return r.status === 200 && r.text.includes('bench-agent');
    }, 15_000, 50);
    const started = performance.now();
    const enq = await http('POST', `${base}/v1/jobs`, admin, { pool: 'bench', type: 'listAccounts', resource: 'bench', payload: {}, timeoutMs: 600_000 });
    if (enq.status !== 201) throw new Error(`enqueue failed: ${enq.status} ${enq.text}`);
    const id = (JSON.parse(enq.text) as { id: string }).id;
    let job: { status: string; error?: unknown } = { status: 'queued' };
    while (!['succeeded', 'failed', 'cancelled'].includes(job.status)) {
      job = JSON.parse((await http('GET', `${base}/v1/jobs/${id}?waitMs=20000`, admin)).text) as typeof job;
    }
    if (job.status !== 'succeeded') throw new Error(`job ${job.status}: ${JSON.stringify(job.error)}`);
    const jobMs = performance.now() - started;
    const records = await countOutput(`${base}/v1/jobs/${id}/output`, admin);
    const ms = performance.now() - started;
    if (records !== expected) throw new Error(`read back ${records} records, expected ${expected}`);
    return { ms, jobMs, records, agentMaxRssMb: vmHwmMb(agent.pid!), proxyMaxRssMb: vmHwmMb(proxy.pid!) };
  } finally {
    if (agent) await stop(agent);
    await stop(proxy);
  }
}
