import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JobView } from '../../lib/protocol/schemas.js';
import { waitFor } from '../fixtures/net.js';
import { ROOT, buildDist, spawnProcess, startAgentProcess, startProxyProcess, stopAll, type Proc, type ProxyProc } from '../fixtures/processes.js';
import { startTinyproxy, type Tinyproxy } from '../fixtures/tinyproxy.js';

/**
 * Log scan: a scenario with a known agent token (from a file), a resource
 * password (from a file) and forward-proxy credentials; every line the
 * agents and the proxy print is captured and searched for those values.
 */
const RESOURCE_PASSWORD = 'resource-pw-Zq81-secret';
const PROXY_USER = 'corpuser';
const PROXY_PASS = 'corp-proxy-pw-x7T2';
let proxy: ProxyProc;
let tiny: Tinyproxy;
let dir: string;
const procs: Proc[] = [];

beforeAll(async () => {
  buildDist();
  dir = mkdtempSync(join(tmpdir(), 'outpost-e2e-secrets-'));
  proxy = await startProxyProcess({ env: { PROXY_LOG_LEVEL: 'debug' } });
  tiny = await startTinyproxy({ basicAuth: { user: PROXY_USER, pass: PROXY_PASS } });
  writeFileSync(join(dir, 'token'), `${proxy.agentToken}\n`);
  writeFileSync(join(dir, 'resource-pw'), `${RESOURCE_PASSWORD}\n`);
  const config = {
    proxy: { url: proxy.url, tokenFile: join(dir, 'token'), waitMs: 3000 },
    concurrency: 4,
    shutdownGraceMs: 1000,
    health: { host: '127.0.0.1', port: 0 },
    log: { level: 'debug', format: 'json' },
    resources: { vault: { kind: 'fake', passwordFile: join(dir, 'resource-pw') } },
  };
  writeFileSync(join(dir, 'fake.json'), JSON.stringify(config));
  const { resources: _r, ...plain } = config;
  writeFileSync(join(dir, 'plain.json'), JSON.stringify(plain));
  const env = { HTTPS_PROXY: '', HTTP_PROXY: tiny.url, http_proxy: '', NO_PROXY: '', no_proxy: '' };
  procs.push(startAgentProcess('plain-agent', { ...env, AGENT_CONFIG: join(dir, 'plain.json'), AGENT_ID: 'plain-agent' }));
  procs.push(
    spawnProcess(process.execPath, [join(ROOT, 'spec/fixtures/fake-agent.mjs')], {
      name: 'fake-agent',
      env: { ...process.env, ...env, AGENT_CONFIG: join(dir, 'fake.json'), AGENT_ID: 'fake-agent' },
    }),
  );
  await Promise.all(procs.map((p) => p.waitForLine(/"agent started"/)));
}, 90_000);

afterAll(async () => {
  await stopAll();
  await Promise.all([proxy?.stop(), tiny?.stop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function run(job: Record<string, unknown>): Promise<JobView> {
  const { id } = await proxy.call<{ id: string }>('POST', '/v1/jobs', { pool: proxy.pool, payload: {}, maxAttempts: 1, ...job });
  let view: JobView | undefined;
  await waitFor(async () => {
    view = await proxy.call<JobView>('GET', `/v1/jobs/${id}?waitMs=2000`);
    return ['succeeded', 'failed'].includes(view.status);
  }, 20_000, 0);
  return view!;
}

describe('secrets never reach a log line, an error message or a job result', () => {
  it('runs a scenario through the forward proxy and finds no secret anywhere', async () => {
    const jobs = await Promise.all([
      run({ type: 'ping' }),
      run({ type: 'ping' }),
      run({ type: 'grant', resource: 'vault', payload: { accountId: 'boom', entitlementId: 'g' } }),
      run({ type: 'grant', resource: 'vault', payload: { accountId: 'ok', entitlementId: 'g' } }),
      run({ type: 'listAccounts', resource: 'vault' }),
    ]);
    expect(jobs.map((j) => j.status)).toEqual(['succeeded', 'succeeded', 'failed', 'succeeded', 'succeeded']);
    // An unknown error's text (here quoting the password) never reaches the job: its class only.
    expect(jobs[2]!.error).toEqual({ code: 'internal', message: 'internal error (Error)', retryable: false });
    // Results and output are never rewritten by value: what merely looks like a credential arrives as it is.
    expect(jobs[3]!.result).toEqual({ changed: true, echo: 'connected with password=hunter2 as ok' });
    const res = await fetch(`${proxy.url}/v1/jobs/${jobs[4]!.id}/output`, { headers: { authorization: `Bearer ${proxy.adminToken}` } });
    const output = await res.text();
    expect(JSON.parse(output.split('\n')[0]!)).toMatchObject({ name: 'admins', attributes: { note: 'password=hunter2', url: 'http://u:p@h/' } });
    expect(JSON.stringify(jobs)).not.toContain('[REDACTED]');
    // Both agents went through the forward proxy.
    expect(tiny.log()).toMatch(/CONNECT 127\.0\.0\.1/);

    for (const p of procs) expect(await p.stop()).toBe(0);
    const logs = [...procs.map((p) => p.output()), proxy.proc.output()].join('\n');
    expect(logs).toContain('binding as svc with password');
    expect(logs).toContain('[REDACTED]');
    const secrets = [proxy.agentToken, RESOURCE_PASSWORD, PROXY_PASS, encodeURIComponent(PROXY_PASS)];
    for (const s of secrets) {
      expect(logs).not.toContain(s);
      expect(JSON.stringify(jobs)).not.toContain(s);
      expect(JSON.stringify(output)).not.toContain(s);
    }
  }, 60_000);
});
