import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkAgent, type CheckRow } from '../../lib/agent/check.js';
import { silentLogger } from '../../lib/log/index.js';
import { makeTestPki, type TestPki } from '../fixtures/tls.js';
import { startTinyproxy, type Tinyproxy } from '../fixtures/tinyproxy.js';
import { testAgentConfig } from './harness.js';
import { AGENT_SUITE_PROXY, startTestProxy, type TestProxy } from '../fixtures/proxy-server.js';

/**
 * `bin/agent check` hints, each on a real misconfiguration: a real HTTPS
 * integration-proxy with a private test CA (directly and through tinyproxy),
 * a plain-HTTP one, and real files with real modes.
 */
let plain: TestProxy;
let tls: TestProxy;
let pki: TestPki;
let fwd: Tinyproxy;
let dir: string;
const NO_PROXY_ENV: NodeJS.ProcessEnv = {};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'outpost-check-'));
  pki = makeTestPki();
  [plain, tls, fwd] = await Promise.all([startTestProxy(AGENT_SUITE_PROXY), startTestProxy({ ...AGENT_SUITE_PROXY, tls: { certFile: pki.certFile, keyFile: pki.keyFile } }), startTinyproxy()]);
}, 60_000);
afterAll(async () => {
  await Promise.all([plain?.stop(), tls?.stop(), fwd?.stop()]);
  rmSync(dir, { recursive: true, force: true });
  rmSync(pki.dir, { recursive: true, force: true });
});

const proxyRow = (rows: CheckRow[]) => rows.find((r) => r.target.startsWith('proxy '))!;
const warnings = (rows: CheckRow[]) => rows.filter((r) => r.level === 'warn');
const check = (config: Parameters<typeof checkAgent>[0], env: NodeJS.ProcessEnv = NO_PROXY_ENV, timeoutMs = 5000) => checkAgent(config, { log: silentLogger(), env }, timeoutMs);
const hostPort = (url: string) => new URL(url).host;

describe('bin/agent check hints', () => {
  it('an untrusted certificate: names subject and issuer, points to proxy.caFile and NODE_EXTRA_CA_CERTS', async () => {
    const rows = await check(testAgentConfig(tls));
    const row = proxyRow(rows);
    expect(row).toMatchObject({ ok: false, level: 'fail' });
    process.stdout.write(`[row] ${JSON.stringify(row)}\n`);
    expect(row.detail).toContain('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    expect(row.detail).toContain('subject CN=localhost');
    expect(row.detail).toContain('issued by CN=Outpost Test CA');
    expect(row.hint).toContain('proxy.caFile');
    expect(row.hint).toContain('NODE_EXTRA_CA_CERTS');
    // With the CA it passes.
    const good = proxyRow(await check(testAgentConfig(tls, { proxy: { caFile: pki.caCertFile } as never })));
    expect(good).toMatchObject({ ok: true, level: 'ok', detail: 'reachable, token accepted' });
  });

  it('the same through a forward proxy: the row says "via forward proxy HOST:PORT" and still names the issuer', async () => {
    const env = { HTTPS_PROXY: fwd.url };
    const row = proxyRow(await check(testAgentConfig(tls), env));
    expect(row.detail).toContain(`via forward proxy ${hostPort(fwd.url)}`);
    expect(row.detail).toContain('issued by CN=Outpost Test CA');
    expect(row.hint).toContain('proxy.caFile');
    const good = proxyRow(await check(testAgentConfig(tls, { proxy: { caFile: pki.caCertFile } as never }), env));
    expect(good).toMatchObject({ ok: true, detail: `reachable, token accepted via forward proxy ${hostPort(fwd.url)}` });
  });

  it('https:// to a plain-HTTP port: "this port speaks plain HTTP"', async () => {
    const url = plain.url.replace('http://', 'https://');
    const row = proxyRow(await check(testAgentConfig({ url, agentToken: plain.agentToken })));
    expect(row).toMatchObject({ ok: false, level: 'fail' });
    expect(row.detail).toContain('this port speaks plain HTTP');
    expect(row.hint).toContain('PROXY_TLS_CERT_FILE');
  });

  it('http:// to an HTTPS port: "this port speaks HTTPS", directly and through a forward proxy', async () => {
    const url = tls.url.replace('https://', 'http://');
    const row = proxyRow(await check(testAgentConfig({ url, agentToken: tls.agentToken })));
    expect(row).toMatchObject({ ok: false, level: 'fail' });
    expect(row.detail).toContain('this port speaks HTTPS');
    expect(row.hint).toContain(`https://${hostPort(url)}`);
    const via = proxyRow(await check(testAgentConfig({ url, agentToken: tls.agentToken }), { HTTP_PROXY: fwd.url }));
    process.stdout.write(`[row] ${JSON.stringify(via)}\n`);
    expect(via).toMatchObject({ ok: false, level: 'fail' });
    expect(via.detail).toContain('this port speaks HTTPS');
    expect(via.detail).toContain(`via forward proxy ${hostPort(fwd.url)}`);
  });

  it('http:// to a non-loopback host warns that the token travels in clear (a static warning)', async () => {
    const rows = await check(testAgentConfig({ url: 'http://proxy.example.com', agentToken: plain.agentToken }), NO_PROXY_ENV, 2000);
    expect(warnings(rows)).toEqual([expect.objectContaining({ target: 'proxy.url', ok: true, level: 'warn', detail: expect.stringContaining('in clear') })]);
    expect(warnings(rows)[0]!.hint).toContain('https://');
    // Loopback over http:// is fine (a sidecar).
    expect(warnings(await check(testAgentConfig(plain)))).toEqual([]);
  });

  it('insecureSkipTlsVerify: the proxy row passes, with a warning row that names proxy.caFile', async () => {
    const rows = await check(testAgentConfig(tls, { proxy: { insecureSkipTlsVerify: true } as never }));
    expect(proxyRow(rows)).toMatchObject({ ok: true, level: 'ok' });
    expect(warnings(rows)).toEqual([expect.objectContaining({ target: 'proxy.insecureSkipTlsVerify', level: 'warn' })]);
    expect(warnings(rows)[0]!.hint).toContain('proxy.caFile');
  });

  it('a secret file readable by group or others is a warning with the chmod to run; 0600 is not', async () => {
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, plain.agentToken);
    chmodSync(tokenFile, 0o644);
    const config = testAgentConfig(plain, { proxy: { tokenFile } as never, resources: { db: { kind: 'postgres', passwordFile: join(dir, 'token') } } });
    const rows = await check(config);
    expect(warnings(rows).map((r) => [r.target, r.detail]).sort()).toEqual([
      ['proxy.tokenFile', `${tokenFile} is readable by group and others (mode 0644)`],
      ['resources.db.passwordFile', `${tokenFile} is readable by group and others (mode 0644)`],
    ]);
    expect(warnings(rows)[0]!.hint).toBe(`chmod 600 ${tokenFile} (owned by the user the agent runs as)`);
    // Warnings do not fail the proxy row.
    expect(proxyRow(rows)).toMatchObject({ ok: true, level: 'ok' });
    chmodSync(tokenFile, 0o600);
    expect(warnings(await check(config))).toEqual([]);
  });
});
