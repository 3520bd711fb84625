/**
 * integration-proxy benchmark: wake-up latency of an idle parked poll,
 * lease + results throughput with batching on SQLite, and the proxy's RSS
 * with 2 000 parked polls. The proxy runs as its own process (dist/bin), the
 * load comes from this one over loopback HTTP with keep-alive. Wake-up is
 * reported both from the enqueue request being sent and from its
 * acknowledgement, next to the machine's floor (an idle GET /healthz round
 * trip); throughput also as proxy CPU µs per job (user/system), the figure to
 * compare between runs on a shared machine.
 *
 *   npm run -s build && node dist/bench/proxy.js [--jobs 20000] [--pollers 4] [--max 32] [--carry] [--parked 2000] [--node-args='--cpu-prof --cpu-prof-dir DIR']
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '20000' },
    pollers: { type: 'string', default: '4' },
    max: { type: 'string', default: '32' },
    parked: { type: 'string', default: '2000' },
    wakeups: { type: 'string', default: '300' },
    // Results ride on the next lease request (what agents do with a proxy that lists them in `carries`).
    carry: { type: 'boolean', default: false },
    // Extra node options of the proxy process, e.g. --node-args='--cpu-prof --cpu-prof-dir /tmp/prof'.
    'node-args': { type: 'string', default: '' },
  },
});
const JOBS = Number(values.jobs);
const POLLERS = Number(values.pollers);
const MAX = Number(values.max);
const PARKED = Number(values.parked);
const WAKEUPS = Number(values.wakeups);

const here = new URL('.', import.meta.url).pathname;
const proxyJs = resolve(here, '../bin/integration-proxy.js');
const dir = mkdtempSync(join(tmpdir(), 'outpost-bench-'));
const ADMIN = 'adm-bench-0123456789abcdef';
// The parked polls come from one token of their own pool (`idle`): the per-pool quotas are raised to fit them.
const env = {
  PATH: process.env.PATH ?? '', PROXY_STORE: `sqlite:${join(dir, 'bench.db')}`, PROXY_ADMIN_TOKEN: ADMIN, PROXY_PORT: '0', PROXY_LOG_LEVEL: 'info',
  PROXY_QUOTA_PARKED_POLLS_PER_POOL: String(PARKED + 100), PROXY_QUOTA_AGENTS_PER_POOL: String(PARKED + 100),
  PROXY_QUOTA_REQUESTS_PER_TOKEN: String(Math.max(3000, PARKED * 2)), PROXY_MAX_WAIT_MS: '120000',
};

const agent = new Agent({ keepAlive: true, maxSockets: PARKED + 64 });
let base = '';

function call(method: string, path: string, token: string, body?: unknown): Promise<{ status: number; body: any }> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((res, rej) => {
    const req = request(base + path, {
      method,
      agent,
      headers: { authorization: `Bearer ${token}`, ...(payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}) },
    });
    req.on('response', (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        res({ status: r.statusCode ?? 0, body: text ? JSON.parse(text) : undefined });
      });
    });
    req.on('error', rej);
    req.end(payload);
  });
}

const lease = (token: string, agentId: string, max: number, waitMs: number, results?: unknown[]) =>
  call('POST', '/v1/agent/lease', token, { agentId, hostname: 'bench', version: '1', resources: [], max, waitMs, ...(results?.length ? { results } : {}) });

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/** CPU seconds (user + system) a process has used, from /proc (clock ticks of 10 ms). */
function cpuSeconds(pid: number): number {
  const t = cpuTimes(pid);
  return t.user + t.sys;
}

function cpuTimes(pid: number): { user: number; sys: number } {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return { user: Number(fields[11]) / 100, sys: Number(fields[12]) / 100 };
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

let proxyPid: number | undefined;

/** The proxy's own count of parked polls (`outpost_proxy_parked_polls` on /metrics). */
function parkedNow(): Promise<number> {
  return new Promise((res, rej) => {
    const req = request(base + '/metrics', { agent, headers: { authorization: `Bearer ${ADMIN}` } });
    req.on('response', (r) => {
      let text = '';
      r.on('data', (c: Buffer) => (text += c.toString()));
      r.on('end', () => res(Number(/^outpost_proxy_parked_polls (\d+)/m.exec(text)?.[1] ?? NaN)));
    });
    req.on('error', rej);
    req.end();
  });
}

/** Waits (up to 60 s) until the proxy holds at least `n` parked polls. */
async function waitParked(n: number, answered: () => number): Promise<void> {
  const end = Date.now() + 60_000;
  while ((await parkedNow()) + answered() < n) {
    if (Date.now() > end) throw new Error(`only ${await parkedNow()} of ${n} polls parked`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function main(): Promise<void> {
  const tok = spawnSync(process.execPath, [proxyJs, 'token', 'create', '--pool', 'bench'], { env, encoding: 'utf8' });
  const token = tok.stdout.trim().split('\n').at(-1)!;
  const idleTok = spawnSync(process.execPath, [proxyJs, 'token', 'create', '--pool', 'idle'], { env, encoding: 'utf8' });
  const idleToken = idleTok.stdout.trim().split('\n').at(-1)!;
  const nodeArgs = values['node-args'].split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, proxyJs, 'start'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  base = await new Promise<string>((res, rej) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"url":"([^"]+)"/.exec(out);
      if (m) res(m[1]!);
    });
    child.once('exit', (code) => rej(new Error(`proxy exited ${code}`)));
  });
  proxyPid = child.pid;
  console.log(`proxy ${base} (pid ${child.pid}), SQLite, node ${process.version}`);
  console.log(`RSS idle: ${rssMb(child.pid!).toFixed(1)} MB`);

  // 1. Wake-up latency: one idle parked poll; time from sending the enqueue to receiving the lease answer.
  const measureWake = async (label: string): Promise<void> => {
    const wake: number[] = [];
    const rtt: number[] = [];
    const afterAck: number[] = [];
    for (let i = 0; i < WAKEUPS + 20; i++) {
      const parked = lease(token, 'waker', 1, 30_000);
      await new Promise((r) => setTimeout(r, 5));
      const t0 = process.hrtime.bigint();
      const enq = call('POST', '/v1/jobs', ADMIN, { pool: 'bench', type: 'ping' });
      let t2 = 0n;
      void enq.then(() => (t2 = process.hrtime.bigint()));
      const got = await parked;
      const t1 = process.hrtime.bigint();
      await enq;
      const job = got.body.jobs[0];
      await call('POST', '/v1/agent/results', token, { agentId: 'waker', results: [{ jobId: job.id, leaseToken: job.leaseToken, outcome: 'succeeded', result: {} }] });
      if (i >= 20) {
        wake.push(Number(t1 - t0) / 1e6);
        rtt.push(Number(t2 - t0) / 1e6);
        afterAck.push(Math.max(0, Number(t1 - t2) / 1e6));
      }
    }
    // The floor of any answer on this machine: an idle round trip that touches neither store nor waiters.
    const floor: number[] = [];
    for (let i = 0; i < WAKEUPS; i++) {
      await new Promise((r) => setTimeout(r, 5));
      const t0 = process.hrtime.bigint();
      await call('GET', '/healthz', token);
      floor.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    for (const xs of [wake, rtt, afterAck, floor]) xs.sort((a, b) => a - b);
    const f = (xs: number[]) => `p50 ${pct(xs, 50).toFixed(2)} ms, p99 ${pct(xs, 99).toFixed(2)} ms`;
    console.log(`wake-up${label}, ${WAKEUPS} samples of an idle parked poll:`);
    console.log(`  enqueue sent → lease answer received: ${f(wake)}`);
    console.log(`  enqueue acknowledged → lease answer received: ${f(afterAck)}`);
    console.log(`  (enqueue round trip alone: ${f(rtt)})`);
    console.log(`  (GET /healthz round trip after the same 5 ms idle, the machine's floor: ${f(floor)})`);
  };
  await measureWake('');

  // 2. Throughput: JOBS queued in batches of 1 000, then POLLERS concurrent pollers (max MAX), results batched per lease answer.
  for (let n = 0; n < JOBS; n += 1000) {
    const jobs = Array.from({ length: Math.min(1000, JOBS - n) }, () => ({ pool: 'bench', type: 'ping', payload: { delayMs: 0 } }));
    await call('POST', '/v1/jobs/batch', ADMIN, { jobs });
  }
  let done = 0;
  const times0 = cpuTimes(child.pid!);
  const cpu0 = times0.user + times0.sys;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: POLLERS }, async (_, p) => {
      const agentId = `poller-${p}`;
      let carried: unknown[] = [];
      for (;;) {
        const r = await lease(token, agentId, MAX, 0, carried);
        if (carried.length) done += ((r.body.results ?? []) as Array<{ status: string }>).filter((x) => x.status === 'accepted').length;
        const jobs = r.body.jobs as Array<{ id: string; leaseToken: string }>;
        const results = jobs.map((j) => ({ jobId: j.id, leaseToken: j.leaseToken, outcome: 'succeeded', result: { ok: true } }));
        if (values.carry) {
          carried = results;
          if (!jobs.length) return;
          continue;
        }
        if (!jobs.length) return;
        const ack = await call('POST', '/v1/agent/results', token, { agentId, results });
        done += (ack.body.results as Array<{ status: string }>).filter((x) => x.status === 'accepted').length;
      }
    }),
  );
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = cpuSeconds(child.pid!) - cpu0;
  const times1 = cpuTimes(child.pid!);
  console.log(`throughput: ${done} jobs leased + completed in ${secs.toFixed(2)} s = ${Math.round(done / secs)} jobs/s (${POLLERS} pollers, max ${MAX}, results ${values.carry ? 'carried on the next lease request' : 'batched in their own call'})`);
  console.log(`  proxy CPU ${cpu.toFixed(2)} s = ${Math.round(done / Math.max(cpu, 0.01))} jobs per proxy CPU-second (the ceiling on one free core); load average ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]}`);
  const usPerJob = (s: number) => ((s * 1e6) / Math.max(done, 1)).toFixed(1);
  console.log(`  proxy CPU per job: ${usPerJob(cpu)} µs (user ${usPerJob(times1.user - times0.user)} µs, system ${usPerJob(times1.sys - times0.sys)} µs)`);

  // 3. Memory: PARKED idle polls of another pool held open (opened 500 at a time), then the wake-up again beside them.
  const rssBefore = rssMb(child.pid!);
  const polls: Array<ReturnType<typeof lease>> = [];
  // Polls answered before the stop (refused, or a connection error): counted and reported, not waited for.
  const early = new Map<string, number>();
  let stopping = false;
  const note = (k: string) => !stopping && early.set(k, (early.get(k) ?? 0) + 1);
  for (let i = 0; i < PARKED; i++) {
    polls.push(
      lease(idleToken, `idle-${i}`, 1, 110_000).then(
        (r) => (note(String(r.status)), r),
        (err: NodeJS.ErrnoException) => (note(err.code ?? 'error'), { status: 0, body: { jobs: [] } }),
      ),
    );
    if (i % 500 === 499) await new Promise((r) => setTimeout(r, 50));
  }
  const earlyCount = () => [...early.values()].reduce((a, b) => a + b, 0);
  await waitParked(PARKED, earlyCount);
  await new Promise((r) => setTimeout(r, 2000));
  const rssParked = rssMb(child.pid!);
  const held = await parkedNow();
  if (early.size) console.log(`polls answered before the stop (not parked): ${JSON.stringify(Object.fromEntries(early))}`);
  console.log(`RSS with ${held} parked polls: ${rssParked.toFixed(1)} MB (${(((rssParked - rssBefore) * 1024) / held).toFixed(1)} KB per poll over the ${rssBefore.toFixed(1)} MB before)`);
  await measureWake(` beside ${PARKED} parked polls`);
  console.log(`RSS after the wake-ups: ${rssMb(child.pid!).toFixed(1)} MB`);
  stopping = true;
  child.kill('SIGTERM');
  const answered = await Promise.all(polls);
  console.log(`stop answered ${answered.filter((a) => a.status === 200 && a.body.jobs.length === 0).length}/${PARKED} parked polls with {jobs: []}`);
  await new Promise((r) => child.once('exit', r));
  agent.destroy();
  rmSync(dir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  console.error(err);
  // Never leave the proxy process behind.
  if (proxyPid) process.kill(proxyPid, 'SIGKILL');
  process.exit(1);
});
