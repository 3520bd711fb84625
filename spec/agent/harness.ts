import { PassThrough } from 'node:stream';
import { createAgent, type Agent, type AgentDeps } from '../../lib/agent/agent.js';
import { agentConfigDefaults, type AgentConfig } from '../../lib/config/agent.js';
import { createLogger, silentLogger, type Logger } from '../../lib/log/index.js';

// The in-process test proxy is `startTestProxy` in spec/fixtures/proxy-server.ts (one helper for every suite);
// the agent suites start it with `AGENT_SUITE_PROXY` (long leases, unknown job types accepted).

/** An agent config for tests: health on a free loopback port, short waits. */
export function testAgentConfig(proxy: { url: string; agentToken: string }, over: Partial<AgentConfig> = {}): AgentConfig {
  const { proxy: proxyOver, ...rest } = over;
  const defaults = agentConfigDefaults();
  return {
    ...defaults,
    concurrency: 4,
    shutdownGraceMs: 2000,
    health: { host: '127.0.0.1', port: 0 },
    log: { ...defaults.log, level: 'debug', format: 'json' },
    agentId: `agent-${Math.random().toString(36).slice(2, 10)}`,
    resources: {},
    ...rest,
    proxy: { ...defaults.proxy, url: proxy.url, token: proxy.agentToken, tokenFile: null, caFile: null, waitMs: 2000, insecureSkipTlsVerify: false, ...proxyOver },
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
