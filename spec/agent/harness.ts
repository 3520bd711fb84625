import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { PassThrough } from 'node:stream';
import got, { type Got } from 'got';
import { createAgent, type Agent, type AgentDeps } from '../../lib/agent/agent.js';
import type { AgentConfig } from '../../lib/config/agent.js';
import { loadProxyConfig } from '../../lib/config/proxy.js';
import { createLogger, silentLogger, type Logger } from '../../lib/log/index.js';
import type { JobView } from '../../lib/protocol/schemas.js';
import { createProxyServer, type ProxyServer } from '../../lib/proxy/server.js';
import type { Clock } from '../../lib/util/clock.js';
import { waitFor } from '../fixtures/net.js';

/** An in-process integration-proxy on SQLite in a temp dir, with a pool token and an admin client. */
export interface TestProxy {
  server: ProxyServer;
  url: string;
  pool: string;
  agentToken: string;
  adminToken: string;
  admin: Got;
  enqueue(job: { type: string; resource?: string | null; payload?: unknown; timeoutMs?: number; maxAttempts?: number }): Promise<string>;
  enqueueMany(jobs: Array<{ type: string; resource?: string | null; payload?: unknown }>): Promise<string[]>;
  job(id: string, waitMs?: number): Promise<JobView>;
  /** Waits until the job is terminal. */
  done(id: string, timeoutMs?: number): Promise<JobView>;
  stop(): Promise<void>;
}

/** Options of the test proxy. */
export interface TestProxyOptions {
  leaseTtlMs?: number;
  reaperIntervalMs?: number;
  maxWaitMs?: number;
  port?: number;
  /** An existing store dir (to restart a proxy on the same data). */
  dir?: string;
  tls?: { certFile: string; keyFile: string };
  /** The proxy's clock (a FakeClock lets a test expire leases at will). */
  clock?: Clock;
  /** Largest request body the proxy accepts (to provoke 413). */
  bodyLimitBytes?: number;
}

export async function startTestProxy(opts: TestProxyOptions = {}): Promise<TestProxy> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'outpost-agent-component-'));
  const adminToken = 'admin-token-component-0123456789';
  const config = loadProxyConfig({
    env: {},
    overrides: {
      host: '127.0.0.1',
      port: opts.port ?? 0,
      store: { url: `sqlite:${join(dir, 'proxy.db')}` },
      adminToken,
      leaseTtlMs: opts.leaseTtlMs ?? 30_000,
      reaperIntervalMs: opts.reaperIntervalMs ?? 200,
      maxWaitMs: opts.maxWaitMs ?? 30_000,
      // The component tests send job types no agent knows, to see the agent's `unknown_type`.
      acceptUnknownTypes: true,
      ...(opts.tls ? { tls: opts.tls } : {}),
      ...(opts.bodyLimitBytes ? { bodyLimitBytes: opts.bodyLimitBytes } : {}),
    },
  });
  const server = createProxyServer(config, { log: silentLogger(), ...(opts.clock ? { clock: opts.clock } : {}) });
  const pool = 'p1';
  const agentToken = await server.createToken({ pool });
  await server.start();
  const url = server.url;
  // No keep-alive: an idle socket of the test client must not keep jest from exiting.
  const agent = { http: new HttpAgent({ keepAlive: false }), https: new HttpsAgent({ keepAlive: false }) };
  const admin = got.extend({ prefixUrl: url, agent, retry: { limit: 0 }, headers: { authorization: `Bearer ${adminToken}` }, responseType: 'json', timeout: { request: 60_000 } });
  const p: TestProxy = {
    server,
    url,
    pool,
    agentToken,
    adminToken,
    admin,
    async enqueue(job) {
      const res = await admin.post('v1/jobs', { json: { pool, payload: {}, ...job } });
      return (res.body as unknown as { id: string }).id;
    },
    async enqueueMany(jobs) {
      const ids: string[] = [];
      for (let i = 0; i < jobs.length; i += 1000) {
        const res = await admin.post('v1/jobs/batch', { json: { jobs: jobs.slice(i, i + 1000).map((j) => ({ pool, payload: {}, ...j })) } });
        ids.push(...(res.body as unknown as { jobs: Array<{ id: string }> }).jobs.map((j) => j.id));
      }
      return ids;
    },
    async job(id, waitMs) {
      const res = await admin.get(`v1/jobs/${id}${waitMs ? `?waitMs=${waitMs}` : ''}`);
      return res.body as unknown as JobView;
    },
    async done(id, timeoutMs = 20_000) {
      let view: JobView | undefined;
      await waitFor(async () => {
        view = await p.job(id, 2000);
        return ['succeeded', 'failed', 'cancelled'].includes(view.status);
      }, timeoutMs, 0);
      return view!;
    },
    async stop() {
      await server.stop();
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
  return p;
}

/** An agent config for tests: health on a free loopback port, short waits. */
export function testAgentConfig(proxy: { url: string; agentToken: string }, over: Partial<AgentConfig> = {}): AgentConfig {
  const { proxy: proxyOver, ...rest } = over;
  return {
    concurrency: 4,
    shutdownGraceMs: 2000,
    health: { host: '127.0.0.1', port: 0 },
    log: { level: 'debug', format: 'json' },
    agentId: `agent-${Math.random().toString(36).slice(2, 10)}`,
    resources: {},
    ...rest,
    proxy: { url: proxy.url, token: proxy.agentToken, tokenFile: null, caFile: null, waitMs: 2000, insecureSkipTlsVerify: false, ...proxyOver },
  };
}

/** A logger whose JSON lines are kept for assertions. */
export function captureLogger(level = 'debug'): { log: Logger; text(): string; lines(): Array<Record<string, unknown>> } {
  const stream = new PassThrough();
  let text = '';
  stream.setEncoding('utf8').on('data', (d: string) => (text += d));
  const log = createLogger({ level, format: 'json', stream });
  return {
    log,
    text: () => text,
    lines: () => text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** Starts an agent and remembers it for `stopAgents`. */
const agents = new Set<Agent>();
export async function startAgent(config: AgentConfig, deps: AgentDeps = {}): Promise<Agent> {
  const agent = createAgent(config, { log: silentLogger(), ...deps });
  agents.add(agent);
  await agent.start();
  return agent;
}

export async function stopAgents(): Promise<void> {
  await Promise.all([...agents].map((a) => a.stop({ skipWait: true })));
  agents.clear();
}
