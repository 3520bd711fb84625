/**
 * Where an embedded agent's heap goes on no-op jobs (issue 13, P6: the agent's
 * peak RSS in bench-peers grows with the number of jobs). One agent made with
 * createAgent in this process (as bench-peers does), concurrency 32, against a
 * real integration-proxy process (SQLite in a temp dir); N no-op jobs are
 * enqueued first. V8's sampling heap profiler runs while they are worked off
 * and prints bytes per job by the function that allocated them:
 *
 * - `--mode promoted` (default): only objects freed by a full (mark-compact)
 *   GC, i.e. those that outlived two scavenges and were promoted to the old
 *   generation (plus the few young ones a mark-compact happens to free);
 *   what the old generation, and so the peak RSS, grows with;
 * - `--mode all`: every allocation (what makes the scavenges happen);
 * - `--mode none`: no profiler (its own cost is ~1/3 more time).
 *
 * Also printed: scavenges and mark-compacts (PerformanceObserver) and VmHWM.
 * For the bytes promoted at each scavenge, run it with `node --trace-gc-nvp`
 * and sum `promoted=` over the `gc=s` lines after "agent phase starts"
 * (`new_space_survived=` minus `promoted=` is what was copied instead).
 *
 *   npm run -s build && node dist/bench/agent-heap.js [--jobs 100000] [--mode promoted|all|none] [--top 25]
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { loadAgentConfig } from '../lib/config/agent.js';
import { createAgent } from '../lib/agent/agent.js';
import { createLogger } from '../lib/log/index.js';
import type { ConnectorFactory } from '../lib/connectors/types.js';

const { values } = parseArgs({ options: { jobs: { type: 'string', default: '100000' }, mode: { type: 'string', default: 'promoted' }, top: { type: 'string', default: '25' } } });
const JOBS = Number(values.jobs);
const MODE = values.mode ?? 'promoted';
if (!['promoted', 'all', 'none'].includes(MODE)) throw new Error(`--mode ${MODE}: promoted, all or none`);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PROXY = join(ROOT, 'dist/bin/integration-proxy.js');
const ADMIN = 'adm-heap-bench-0123456789abcdef';
/** The agent's phase ends by then, or the run fails (a stuck agent must not hang the benchmark). */
const DEADLINE_MS = 10 * 60_000;

interface SamplingNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: SamplingNode[];
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-heap-'));
  // Port 0: the proxy takes a free one and names it in its start line (as bench/proxy.ts reads it).
  const env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(PROXY|AGENT)_/.test(k))),
    PROXY_HOST: '127.0.0.1', PROXY_PORT: '0', PROXY_STORE: `sqlite:${join(dir, 'proxy.db')}`, PROXY_ADMIN_TOKEN: ADMIN,
  };
  const created = spawnSync(process.execPath, [PROXY, 'token', 'create', '--pool', 'heap'], { env, encoding: 'utf8' });
  if (created.status !== 0) throw new Error(`integration-proxy token create failed (${created.status}): ${created.stderr.slice(-500)}`);
  const token = created.stdout.trim().split('\n').at(-1)!;
  const proxy = spawn(process.execPath, [PROXY, 'start'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const base = await new Promise<URL>((resolve, reject) => {
      let out = '';
      proxy.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /"url":"([^"]+)"/.exec(out);
        if (m) resolve(new URL(m[1]!));
      });
      proxy.once('exit', (code) => reject(new Error(`integration-proxy exited ${code}`)));
    });
    const port = Number(base.port);
    const http = new Agent({ keepAlive: true });
    const post = (path: string, body: unknown) =>
      new Promise<void>((resolve, reject) => {
        const data = JSON.stringify(body);
        const req = request({ host: '127.0.0.1', port, path, method: 'POST', agent: http, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
          res.resume();
          res.on('end', () => (res.statusCode === 201 ? resolve() : reject(new Error(`${path}: ${res.statusCode}`))));
        });
        req.on('error', reject);
        req.end(data);
      });
    // The job bench-peers runs: a `sql.query` to a connector kind that does nothing.
    for (let n = 0; n < JOBS; n += 1000) {
      await post('/v1/jobs/batch', { jobs: Array.from({ length: Math.min(1000, JOBS - n) }, () => ({ pool: 'heap', type: 'sql.query', resource: 'noop', payload: { query: 'noop', params: {} } })) });
    }
    let done = 0;
    let allDone!: () => void;
    const finished = new Promise<void>((r) => (allDone = r));
    const config = loadAgentConfig({ env: {}, overrides: { proxy: { url: base.origin, token }, concurrency: 32, health: { host: '127.0.0.1', port: 0 }, log: { level: 'warn' }, resources: { noop: { kind: 'bench-noop' } } } });
    // Only what a `sql.query` job reaches (as bench-peers' connector): the rest of Connector is never called.
    const noop = () => ({ kind: 'bench-noop', extra: { 'sql.query': async () => void (++done === JOBS && allDone()) }, async close() {} });
    const agent = createAgent(config, { log: createLogger({ level: 'warn' }), connectorKinds: { 'bench-noop': noop as unknown as ConnectorFactory } });

    const gcs = { scavenges: 0, markCompacts: 0 };
    const obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
        if (kind === constants.NODE_PERFORMANCE_GC_MINOR) gcs.scavenges++;
        else if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) gcs.markCompacts++;
      }
    });
    obs.observe({ entryTypes: ['gc'] });
    const session = new Session();
    if (MODE !== 'none') {
      session.connect();
      await session.post('HeapProfiler.startSampling', { samplingInterval: 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: MODE === 'all' });
    }
    // Where the agent's phase starts in a `--trace-gc-nvp` trace (the enqueue above allocates too).
    console.log('[agent-heap] agent phase starts');
    const t0 = performance.now();
    await agent.start();
    const deadline = setTimeout(() => allDone(), DEADLINE_MS);
    await finished;
    clearTimeout(deadline);
    if (done < JOBS) throw new Error(`only ${done} of ${JOBS} jobs ran within ${DEADLINE_MS / 60_000} min`);
    const ms = performance.now() - t0;
    const profile = MODE === 'none' ? undefined : ((await session.post('HeapProfiler.stopSampling')) as { profile: { head: SamplingNode } }).profile;
    await agent.stop();
    obs.disconnect();
    const hwmKb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);
    console.log(`${done} no-op jobs in ${ms.toFixed(0)} ms (1 agent × 32, mode ${MODE}); ${gcs.scavenges} scavenges, ${gcs.markCompacts} mark-compacts; VmHWM ${(hwmKb / 1024).toFixed(1)} MB`);
    if (profile) report(profile.head, Number(values.top));
  } finally {
    proxy.kill('SIGTERM');
    await new Promise((r) => proxy.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Bytes per job by allocating function (self size of the sampled allocations). */
function report(head: SamplingNode, top: number): void {
  const bytes = new Map<string, number>();
  let total = 0;
  const walk = (n: SamplingNode) => {
    if (n.selfSize) {
      const f = n.callFrame;
      const where = f.url.replace(/^.*\/dist\//, '').replace(/^.*node_modules\//, '');
      const key = `${f.functionName || '(anonymous)'} ${where}${where ? `:${f.lineNumber + 1}` : ''}`;
      bytes.set(key, (bytes.get(key) ?? 0) + n.selfSize);
      total += n.selfSize;
    }
    n.children.forEach(walk);
  };
  walk(head);
  console.log(`sampled: ${(total / 1048576).toFixed(1)} MB, ${Math.round(total / JOBS)} B per job`);
  for (const [key, b] of [...bytes].sort((a, c) => c[1] - a[1]).slice(0, top)) {
    console.log(`${((b / total) * 100).toFixed(1).padStart(5)} % ${String(Math.round(b / JOBS)).padStart(6)} B/job  ${key}`);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
