import { afterAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAgentConfig } from '../../lib/config/agent.js';
import { buildConnectors } from '../../lib/agent/connectors.js';
import { silentLogger } from '../../lib/log/index.js';
import { systemClock } from '../../lib/util/clock.js';
import { OutpostError } from '../../lib/util/errors.js';
import { redact } from '../../lib/util/redact.js';
import { fakeConnectorKinds } from './fake-connector.js';

const dir = mkdtempSync(join(tmpdir(), 'outpost-agent-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const TOKEN = 'agent-token-config-test-7f3a9c';
const base = { AGENT_PROXY_URL: 'http://127.0.0.1:1', AGENT_TOKEN: TOKEN };

function expectConfigError(fn: () => unknown, ...parts: string[]): OutpostError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(OutpostError);
    const e = err as OutpostError;
    expect(e.code).toBe('config_error');
    for (const p of parts) expect(e.message).toContain(p);
    expect(e.message).not.toContain(TOKEN);
    return e;
  }
  throw new Error('expected a config_error');
}

describe('loadAgentConfig', () => {
  it('applies the DESIGN defaults', () => {
    const c = loadAgentConfig({ env: base });
    expect(c.proxy).toMatchObject({ url: 'http://127.0.0.1:1', token: TOKEN, waitMs: 25_000, caFile: null, insecureSkipTlsVerify: false });
    expect(c).toMatchObject({ concurrency: 8, shutdownGraceMs: 20_000, health: { host: '0.0.0.0', port: 8080 }, log: { level: 'info', format: 'json' }, resources: {} });
    expect(c.agentId).toMatch(/^agent-[0-9a-f]{12}$/);
    expect(loadAgentConfig({ env: base }).agentId).not.toBe(c.agentId);
  });

  it('reads every documented environment variable', () => {
    const c = loadAgentConfig({
      env: { ...base, AGENT_CONCURRENCY: '3', AGENT_WAIT_MS: '1000', AGENT_SHUTDOWN_GRACE_MS: '50', AGENT_HEALTH_PORT: '0', AGENT_LOG_LEVEL: 'debug', AGENT_ID: 'pod-7' },
    });
    expect(c).toMatchObject({ concurrency: 3, shutdownGraceMs: 50, health: { port: 0 }, log: { level: 'debug' }, agentId: 'pod-7' });
    expect(c.proxy.waitMs).toBe(1000);
  });

  it('reads the token from a file and registers it for redaction', () => {
    const file = join(dir, 'token');
    writeFileSync(file, 'file-token-abcdef-123456\n');
    const c = loadAgentConfig({ env: { AGENT_PROXY_URL: 'https://p.example', AGENT_TOKEN_FILE: file } });
    expect(c.proxy.token).toBe('file-token-abcdef-123456');
    expect(redact('Bearer x file-token-abcdef-123456')).not.toContain('file-token-abcdef-123456');
  });

  it('takes the file from AGENT_CONFIG, and the example config is accepted by strict validation', () => {
    const example = fileURLToPath(new URL('../../config/agent.example.json', import.meta.url));
    const tokenFile = join(dir, 'agent-token');
    writeFileSync(tokenFile, 'example-token-1234567');
    const json = JSON.parse(readFileSync(example, 'utf8')) as { proxy: { tokenFile: string } };
    json.proxy.tokenFile = tokenFile;
    const file = join(dir, 'example.json');
    writeFileSync(file, JSON.stringify(json));
    const c = loadAgentConfig({ env: { AGENT_CONFIG: file } });
    expect(Object.keys(c.resources).length).toBeGreaterThan(0);
  });

  it('requires exactly one of token and tokenFile', () => {
    expectConfigError(() => loadAgentConfig({ env: { AGENT_PROXY_URL: 'http://x' } }), 'proxy.token');
    const file = join(dir, 't2');
    writeFileSync(file, 'whatever-token-1');
    expectConfigError(() => loadAgentConfig({ env: { ...base, AGENT_TOKEN_FILE: file } }), 'exactly one');
  });

  it('names the key and the reason for invalid values', () => {
    expectConfigError(() => loadAgentConfig({ env: { AGENT_TOKEN: TOKEN } }), 'proxy.url');
    expectConfigError(() => loadAgentConfig({ env: { ...base, AGENT_PROXY_URL: 'ftp://x' } }), 'proxy.url', 'http');
    expectConfigError(() => loadAgentConfig({ env: { ...base, AGENT_CONCURRENCY: '0' } }), 'concurrency');
    expectConfigError(() => loadAgentConfig({ env: { ...base, AGENT_LOG_LEVEL: 'loud' } }), 'log.level');
    expectConfigError(() => loadAgentConfig({ env: base, overrides: { proxy: { colour: 'red' } } }), 'proxy.colour');
    expectConfigError(() => loadAgentConfig({ env: { ...base, AGENT_TOKEN_FILE: '', AGENT_ID: 'bad id!' } }), 'agentId');
    expectConfigError(() => loadAgentConfig({ env: { ...base, AGENT_PROXY_CA_FILE: join(dir, 'missing.pem') } }), 'proxy.caFile', 'ENOENT');
    expectConfigError(() => loadAgentConfig({ env: base, overrides: { resources: { r1: { url: 'x' } } } }), 'resources.r1.kind');
    expectConfigError(() => loadAgentConfig({ env: base, file: join(dir, 'nope.json') }), 'not found');
  });

  it('has the connector factory validate a resource, naming resources.<name>.<key>', () => {
    const c = loadAgentConfig({ env: base, overrides: { resources: { hr: { kind: 'fake' }, dir: { kind: 'fake', failOn: 'x' } } } });
    const deps = { log: silentLogger(), clock: systemClock, readSecret: () => '' };
    expectConfigError(() => buildConnectors(c.resources, fakeConnectorKinds(), deps), 'resources.dir.failOn');
    expectConfigError(() => buildConnectors({ x: { kind: 'ldap' } }, fakeConnectorKinds(), deps), 'resources.x.kind', 'unknown kind "ldap"', 'fake');
  });
});
