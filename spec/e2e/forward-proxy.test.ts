import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { rmSync } from 'node:fs';
import type { JobView } from '../../lib/protocol/schemas.js';
import { freePort, waitFor } from '../fixtures/net.js';
import { buildDist, startAgentProcess, startProxyProcess, stopAll, type Proc, type ProxyProc } from '../fixtures/processes.js';
import { startTinyproxy, type Tinyproxy } from '../fixtures/tinyproxy.js';
import { makeTestPki, type TestPki } from '../fixtures/tls.js';

/**
 * The agent behind a real corporate proxy (tinyproxy), talking HTTPS to a
 * real integration-proxy whose certificate comes from a throwaway CA that
 * the agent trusts through proxy.caFile.
 */
const PROXY_PASS = 'corp-proxy-pass-4e8b1f';
const WRONG_PASS = 'wrong-proxy-pass-93ad07';
let pki: TestPki;
const pkiDirs: string[] = [];
let proxy: ProxyProc;
let open: Tinyproxy;
let authed: Tinyproxy;

beforeAll(async () => {
  buildDist();
  pki = makeTestPki();
  pkiDirs.push(pki.dir);
  proxy = await startProxyProcess({ tls: { certFile: pki.certFile, keyFile: pki.keyFile, caFile: pki.caCertFile } });
  [open, authed] = await Promise.all([startTinyproxy(), startTinyproxy({ basicAuth: { user: 'outpost', pass: PROXY_PASS } })]);
}, 90_000);

afterAll(async () => {
  await stopAll();
  await Promise.all([proxy?.stop(), open?.stop(), authed?.stop()]);
  for (const d of pkiDirs) rmSync(d, { recursive: true, force: true });
});

/** Proxy variables cleared, so the test machine's own settings do not leak in. */
const NO_ENV_PROXY = { HTTPS_PROXY: '', https_proxy: '', HTTP_PROXY: '', http_proxy: '', NO_PROXY: '', no_proxy: '' };

function agent(name: string, env: NodeJS.ProcessEnv): Proc {
  return startAgentProcess(name, {
    ...NO_ENV_PROXY,
    AGENT_PROXY_URL: proxy.url,
    AGENT_TOKEN: proxy.agentToken,
    AGENT_PROXY_CA_FILE: pki.caCertFile,
    AGENT_ID: name,
    AGENT_WAIT_MS: '3000',
    AGENT_SHUTDOWN_GRACE_MS: '0',
    ...env,
  });
}

async function pingThrough(name: string): Promise<void> {
  const { id } = await proxy.call<{ id: string }>('POST', '/v1/jobs', { pool: proxy.pool, type: 'ping', payload: {} });
  let view: JobView | undefined;
  await waitFor(async () => {
    view = await proxy.call<JobView>('GET', `/v1/jobs/${id}?waitMs=2000`);
    return view.status === 'succeeded';
  }, 20_000, 0);
  expect(view!.agentId).toBe(name);
}

const port = () => new URL(proxy.url).port;
const connects = (t: Tinyproxy) => t.log().split('\n').filter((l) => l.includes(`CONNECT localhost:${port()}`)).length;

describe('through a forward proxy (tinyproxy)', () => {
  it('works through HTTPS_PROXY over HTTPS with a private CA; tinyproxy logs the CONNECT', async () => {
    const a = agent('via-proxy', { HTTPS_PROXY: open.url });
    await a.waitForLine(/"agent started"/);
    await pingThrough('via-proxy');
    expect(connects(open)).toBeGreaterThan(0);
    await a.stop();
  }, 40_000);

  it('uses basic auth from the proxy URL, and lower case https_proxy wins', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const a = agent('via-auth', { HTTPS_PROXY: dead, https_proxy: authed.url });
    await pingThrough('via-auth');
    expect(connects(authed)).toBeGreaterThan(0);
    await a.stop();
    expect(a.output()).not.toContain(PROXY_PASS);
  }, 40_000);

  it('NO_PROXY bypasses the forward proxy', async () => {
    const before = connects(open);
    const a = agent('bypass', { HTTPS_PROXY: open.url, NO_PROXY: 'localhost' });
    await pingThrough('bypass');
    await a.stop();
    expect(connects(open)).toBe(before);
  }, 40_000);

  it('wrong proxy credentials: a clear proxy_error, backoff (no hot loop), and the password never logged', async () => {
    const wrong = authed.url.replace(PROXY_PASS, WRONG_PASS);
    const a = agent('wrong-creds', { HTTPS_PROXY: wrong });
    await a.waitForLine(/"agent started"/);
    const t0 = Date.now();
    await a.waitForLine(/proxy_error/);
    await new Promise((r) => setTimeout(r, 3000));
    const elapsedMs = Date.now() - t0;
    await a.stop();
    const failures = a.jsonLines().filter((l) => l.message === 'lease request failed');
    expect(failures.length).toBeGreaterThan(0);
    expect(failures[0]).toMatchObject({ level: 'error', code: 'proxy_error' });
    // tinyproxy answers a CONNECT with wrong credentials with 401 rather than 407.
    expect(failures[0]!.error).toMatch(/^the forward proxy rejected the credentials \((407|401)\)$/);
    // Backoff 1 s → 2 s → 4 s (full jitter): a hot loop would make hundreds of attempts in this time.
    expect(failures.length).toBeLessThanOrEqual(Math.ceil(elapsedMs / 100));
    expect(failures.length).toBeLessThan(40);
    expect(a.output()).not.toContain(WRONG_PASS);
    expect(a.output()).not.toContain(PROXY_PASS);
    expect(a.output()).not.toContain(proxy.agentToken);
  }, 40_000);

  it('no proxy credentials at all: proxy_error with the 407', async () => {
    const a = agent('no-creds', { HTTPS_PROXY: `http://127.0.0.1:${authed.port}` });
    const line = await a.waitForLine(/"lease request failed"/);
    await a.stop();
    expect(JSON.parse(line)).toMatchObject({ code: 'proxy_error', error: 'the forward proxy rejected the credentials (407)' });
  }, 40_000);

  it('an untrusted certificate is a clear tls_error, with backoff', async () => {
    const other = makeTestPki();
    pkiDirs.push(other.dir);
    const a = agent('no-ca', { AGENT_PROXY_CA_FILE: other.caCertFile });
    const line = await a.waitForLine(/"lease request failed"/);
    await a.stop();
    expect(JSON.parse(line)).toMatchObject({ code: 'tls_error', level: 'error' });
  }, 40_000);
});
