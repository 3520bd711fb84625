import { describe, expect, it } from '@jest/globals';
import { connect } from 'node:net';
import { loadAgentConfig } from '../../lib/config/agent.js';
import { loadProxyConfig } from '../../lib/config/proxy.js';
import { sleepUntil } from '../fixtures/net.js';
import { startTestProxy } from '../fixtures/proxy-server.js';

const agentEnv = { AGENT_PROXY_URL: 'http://127.0.0.1:1', AGENT_TOKEN: 'timings-token-123456' };

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toMatchObject({ code: 'config_error' });
    return (err as Error).message;
  }
  throw new Error('expected a config_error');
}

describe('the timings of DESIGN "Timings and their reasons" are config, with its defaults', () => {
  it('agent: waitMs, lease timeout slack, heartbeat, shutdown grace, presence window', () => {
    const c = loadAgentConfig({ env: agentEnv });
    expect(c.proxy).toMatchObject({ waitMs: 25_000, leaseTimeoutSlackMs: 10_000 });
    expect(c).toMatchObject({ shutdownGraceMs: 20_000, presenceMs: 90_000, heartbeat: { fraction: 1 / 3, jitter: 0.1 } });
  });

  it('proxy: poll cap, lease TTL, reaper, presence window, wake-up re-check, keep-alive', () => {
    expect(loadProxyConfig({ env: {} })).toMatchObject({
      maxWaitMs: 30_000, leaseTtlMs: 30_000, reaperIntervalMs: 5000, presenceMs: 90_000, wakeRecheckMs: 2000, keepAliveTimeoutMs: 65_000,
    });
  });

  it('each can be set from the environment, and a wrong value names its key', () => {
    const c = loadAgentConfig({
      env: { ...agentEnv, AGENT_PRESENCE_MS: '60000', AGENT_LEASE_TIMEOUT_SLACK_MS: '5000', AGENT_HEARTBEAT_FRACTION: '0.25', AGENT_HEARTBEAT_JITTER: '0' },
    });
    expect(c).toMatchObject({ presenceMs: 60_000, proxy: { leaseTimeoutSlackMs: 5000 }, heartbeat: { fraction: 0.25, jitter: 0 } });
    expect(loadProxyConfig({ env: { PROXY_WAKE_RECHECK_MS: '500', PROXY_KEEP_ALIVE_TIMEOUT_MS: '75000' } })).toMatchObject({ wakeRecheckMs: 500, keepAliveTimeoutMs: 75_000 });

    expect(configError(() => loadAgentConfig({ env: { ...agentEnv, AGENT_HEARTBEAT_FRACTION: '0.9' } }))).toContain('heartbeat.fraction: must be a number in [0.05, 0.5]');
    expect(configError(() => loadAgentConfig({ env: { ...agentEnv, AGENT_PRESENCE_MS: '10' } }))).toContain('presenceMs: must be an integer in [1000, 86400000]');
    expect(configError(() => loadAgentConfig({ env: { ...agentEnv, AGENT_LEASE_TIMEOUT_SLACK_MS: 'soon' } }))).toContain('proxy.leaseTimeoutSlackMs');
    expect(configError(() => loadProxyConfig({ env: { PROXY_WAKE_RECHECK_MS: '0' } }))).toContain('wakeRecheckMs: must be an integer in [1, 600000]');
    expect(configError(() => loadProxyConfig({ env: { PROXY_LEASE_TTL_MS: '-5' } }))).toContain('leaseTtlMs: must be a positive integer');
  });

  it('the proxy closes an idle keep-alive connection after keepAliveTimeoutMs', async () => {
    const t = await startTestProxy({ overrides: { keepAliveTimeoutMs: 1000 } });
    try {
      const { port } = new URL(t.url);
      const socket = connect(Number(port), '127.0.0.1');
      let answer = '';
      let closed = false;
      socket.setEncoding('utf8').on('data', (d: string) => (answer += d));
      socket.on('close', () => (closed = true));
      socket.write('GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n');
      await sleepUntil(() => answer.includes('\r\n\r\n'), { timeoutMs: 5000, what: 'the /healthz answer' });
      expect(answer).toMatch(/^HTTP\/1\.1 200/);
      expect(answer.toLowerCase()).toContain('keep-alive: timeout=1');
      // With the default (65 s) the connection would outlive this wait by far.
      await sleepUntil(() => closed, { timeoutMs: 8000, what: 'the idle connection closed by the proxy' });
    } finally {
      await t.stop();
    }
  });
});
