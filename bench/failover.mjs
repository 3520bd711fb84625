/**
 * Failover benchmark (issue 13, P3): a real integration-proxy (SQLite) and two
 * agents as processes; a long `ping` is leased, its agent is killed with
 * SIGKILL, and the proxy's own attempt records say when the job was leased
 * again. Also SIGTERM (release) → re-lease. Times are the proxy's (attempt
 * rows), the kill time is this process's wall clock (same machine).
 *
 *   npm run -s build && node bench/failover.mjs [--root DIR] [--ttl 3000,30000] [--reaper 5000] [--runs 3]
 *
 * `--root` points at another checkout's built tree (e.g. the previous release) to compare in one run.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    root: { type: 'string', default: resolve(new URL('..', import.meta.url).pathname) },
    // The agents' tree when it differs from the proxy's (to tell a proxy change from an agent change).
    'agent-root': { type: 'string' },
    ttl: { type: 'string', default: '3000,30000' },
    reaper: { type: 'string', default: '5000' },
    runs: { type: 'string', default: '3' },
  },
});
const ROOT = resolve(values.root);
const AGENT_ROOT = resolve(values['agent-root'] ?? values.root);
const ADMIN = 'adm-bench-failover-0123456789';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function freePort() {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

function spawnBin(bin, env) {
  const child = spawn(join(bin === 'agent' ? AGENT_ROOT : ROOT, 'bin', bin), ['start'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  return { child, output: () => out };
}

async function until(check, timeoutMs = 120_000, stepMs = 20) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out');
    await sleep(stepMs);
  }
}

async function scenario(ttlMs, reaperMs) {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-bench-failover-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = {
    PROXY_HOST: '127.0.0.1', PROXY_PORT: String(port), PROXY_STORE: `sqlite:${join(dir, 'p.db')}`, PROXY_ADMIN_TOKEN: ADMIN,
    PROXY_LEASE_TTL_MS: String(ttlMs), PROXY_REAPER_INTERVAL_MS: String(reaperMs), PROXY_LOG_LEVEL: 'warn',
  };
  const tok = spawnSync(join(ROOT, 'bin/integration-proxy'), ['token', 'create', '--pool', 'b'], { env: { ...process.env, ...env }, encoding: 'utf8' });
  const agentToken = tok.stdout.trim().split('\n').pop();
  const proxy = spawnBin('integration-proxy', env);
  const call = async (method, path, body) => {
    const r = await fetch(url + path, { method, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: body && JSON.stringify(body) });
    return r.json();
  };
  await until(async () => (await fetch(url + '/readyz')).status === 200);
  const agents = new Map();
  const startAgent = (id) => {
    const a = spawnBin('agent', { AGENT_PROXY_URL: url, AGENT_TOKEN: agentToken, AGENT_ID: id, AGENT_LOG_LEVEL: 'warn', AGENT_SHUTDOWN_GRACE_MS: '200', AGENT_HEALTH_HOST: '127.0.0.1', AGENT_HEALTH_PORT: '0' });
    agents.set(id, a);
  };
  startAgent('a');
  startAgent('b');
  await until(async () => (await call('GET', '/v1/agents?pool=b')).filter?.((x) => x.status === 'online').length === 2);
  await sleep(500); // both agents parked
  const runOnce = async (signal) => {
    const { id } = await call('POST', '/v1/jobs', { pool: 'b', type: 'ping', payload: { delayMs: ttlMs * 4 + 10_000 } });
    const first = await until(async () => {
      const v = await call('GET', `/v1/jobs/${id}`);
      return v.status === 'leased' ? v : undefined;
    });
    // Let at least one heartbeat renew the lease, as a live agent's would be.
    await sleep(Math.min(ttlMs / 2, 2000));
    const victim = agents.get(first.agentId);
    const at = Date.now();
    victim.child.kill(signal);
    const view = await until(async () => {
      const v = await call('GET', `/v1/jobs/${id}`);
      return v.attempts?.length >= 2 ? v : undefined;
    }, ttlMs * 3 + 60_000);
    const [a1, a2] = view.attempts;
    await new Promise((r) => (victim.child.exitCode !== null || victim.child.signalCode ? r() : victim.child.once('exit', r)));
    startAgent(first.agentId);
    await call('POST', `/v1/jobs/${id}/cancel`).catch(() => undefined);
    await sleep(1000);
    return { killToLeaseMs: Date.parse(a2.startedAt) - at, endToLeaseMs: Date.parse(a2.startedAt) - Date.parse(a1.endedAt), outcome: a1.outcome };
  };
  const out = [];
  for (let i = 0; i < Number(values.runs); i++) out.push({ kind: 'kill -9', ...(await runOnce('SIGKILL')) });
  for (let i = 0; i < Number(values.runs); i++) out.push({ kind: 'SIGTERM', ...(await runOnce('SIGTERM')) });
  for (const a of agents.values()) a.child.kill('SIGKILL');
  proxy.child.kill('SIGTERM');
  await new Promise((r) => proxy.child.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
  return out;
}

for (const ttl of values.ttl.split(',').map(Number)) {
  const rows = await scenario(ttl, Number(values.reaper));
  for (const r of rows) console.log(JSON.stringify({ root: ROOT, agentRoot: AGENT_ROOT, ttlMs: ttl, reaperMs: Number(values.reaper), ...r }));
}
