import { describe, expect, it } from '@jest/globals';
import { agentConfigDefaults, loadAgentConfig, type AgentConfig, type RawAgentConfig } from '../../lib/config/agent.js';
import type { LogFormat, LogLevel } from '../../lib/config/pieces.js';
import { loadProxyConfig, type ProxyConfig } from '../../lib/config/proxy.js';

// Type-level checks: `npm run typecheck` (which covers spec/) fails when a derived type drifts.
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const expectType = <T extends true>(): T => true as T;

/** Every key path of a config object, as the type says ("proxy.waitMs", …). */
type Paths<T, P extends string = ''> = {
  [K in keyof T & string]: T[K] extends Record<string, unknown> | null
    ? T[K] extends null | string | number | boolean
      ? `${P}${K}`
      : K extends 'resources'
        ? `${P}${K}`
        : Paths<NonNullable<T[K]>, `${P}${K}.`>
    : `${P}${K}`;
}[keyof T & string];

/** The key paths at runtime, to compare with a list checked against `Paths` at compile time. */
function paths(value: object, prefix = ''): string[] {
  return Object.entries(value).flatMap(([k, v]) =>
    v !== null && typeof v === 'object' && k !== 'resources' ? paths(v as object, `${prefix}${k}.`) : [`${prefix}${k}`],
  );
}

describe('config types derived from the convict schemas', () => {
  it('types each key as its schema default says, nullable keys included', () => {
    expectType<Equal<AgentConfig['proxy']['waitMs'], number>>();
    expectType<Equal<AgentConfig['proxy']['token'], string>>();
    expectType<Equal<RawAgentConfig['proxy']['token'], string | null>>();
    expectType<Equal<AgentConfig['proxy']['caFile'], string | null>>();
    expectType<Equal<AgentConfig['log']['level'], LogLevel>>();
    expectType<Equal<AgentConfig['log']['format'], LogFormat>>();
    expectType<Equal<AgentConfig['heartbeat']['fraction'], number>>();
    expectType<Equal<AgentConfig['agentId'], string>>();
    expectType<Equal<ProxyConfig['adminToken'], string | null>>();
    expectType<Equal<ProxyConfig['agents']['minVersion'], string | null>>();
    expectType<Equal<ProxyConfig['log'], AgentConfig['log']>>();
    expectType<Equal<ProxyConfig['acceptUnknownTypes'], boolean>>();
  });

  it('has exactly the keys convict loads, for the agent and the proxy', () => {
    // Each list must name every key of its type and nothing else (the `satisfies` checks it both ways).
    const agentKeys = [
      'proxy.url', 'proxy.token', 'proxy.tokenFile', 'proxy.caFile', 'proxy.waitMs', 'proxy.leaseTimeoutSlackMs', 'proxy.insecureSkipTlsVerify',
      'concurrency', 'shutdownGraceMs', 'presenceMs', 'heartbeat.fraction', 'heartbeat.jitter', 'health.host', 'health.port',
      'log.level', 'log.format', 'log.file', 'log.maxSizeBytes', 'log.maxFiles', 'agentId', 'resources', 'sealing.privateKeyFile',
    ] as const satisfies ReadonlyArray<Paths<RawAgentConfig>>;
    expectType<Equal<(typeof agentKeys)[number], Paths<RawAgentConfig>>>();
    const proxyKeys = [
      'host', 'port', 'store.url', 'adminToken', 'leaseTtlMs', 'maxWaitMs', 'presenceMs', 'reaperIntervalMs', 'wakeRecheckMs', 'keepAliveTimeoutMs',
      'tls.certFile', 'tls.keyFile', 'log.level', 'log.format', 'log.file', 'log.maxSizeBytes', 'log.maxFiles', 'bodyLimitBytes',
      'quotas.agentsPerPool', 'quotas.parkedPollsPerPool', 'quotas.outputBytesPerJob', 'quotas.outputBytesPerPool', 'quotas.queuedJobsPerPool',
      'quotas.requestsPerToken', 'quotas.requestWindowMs', 'quotas.agentInfoBytes', 'retention.finishedJobsMs', 'retention.offlineAgentsMs',
      'retention.sweepIntervalMs', 'retention.batchSize', 'queueTimeoutMs', 'requestTimeoutMs', 'acceptUnknownTypes', 'agents.latestVersion', 'agents.minVersion',
    ] as const satisfies ReadonlyArray<Paths<ProxyConfig>>;
    expectType<Equal<(typeof proxyKeys)[number], Paths<ProxyConfig>>>();

    const loaded = loadAgentConfig({ env: { AGENT_PROXY_URL: 'http://127.0.0.1:1', AGENT_TOKEN: 'derived-types-token-1' } });
    // The loader adds what it resolves (the sealing key read from its file).
    expect(paths(loaded).filter((p) => p !== 'sealing.privateKey').sort()).toEqual([...agentKeys].sort());
    expect(paths(loadProxyConfig({ env: {} })).sort()).toEqual([...proxyKeys].sort());
    expect(paths({ ...agentConfigDefaults(), sealing: { privateKeyFile: null } }).sort()).toEqual([...agentKeys].sort());
  });
});
