import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { JobView } from '../../lib/protocol/schemas.js';
import { freePort, waitFor } from '../fixtures/net.js';
import { ROOT, buildDist, startAgentProcess, startProxyProcess, stopAll, type ProxyProc } from '../fixtures/processes.js';
import { SERVICES_DIR, createPrefix, ensureWine, keepLogs, packageZip, unpack, writeWinFile, type WinePrefix } from '../fixtures/wine.js';

/**
 * The Windows ZIP (scripts/package-windows.mjs, deploy/windows/*.cmd) under Wine: install as an NSSM
 * service, start, run jobs for a real Linux integration-proxy, `net stop` during a job (Ctrl-C →
 * SIGINT → drain), upgrade to a second build, uninstall; and NSSM restarting a killed node.exe.
 * Wine proves packaging, service wiring, start/stop/drain and upgrades; not service accounts, ACLs,
 * real service-manager timeouts, the event log, code signing or Defender.
 */
const SERVICE = 'OutpostAgent';
const DATA = 'C:\\ProgramData\\Outpost';
const PKG_VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const V1 = `${PKG_VERSION}-wine.1`;
const V2 = `${PKG_VERSION}-wine.2`;
// Tests keep the service on manual start (install sets automatic start by default).
const SVC_ENV = { OUTPOST_START_TYPE: 'SERVICE_DEMAND_START' };

interface AgentRow {
  agentId: string;
  version: string;
  status: string;
}

let proxy: ProxyProc;
let prefix: WinePrefix;
let outDir: string;
let zips: { v1: string; v2: string };

const measure = (what: string, ms: number): void => void process.stdout.write(`[measure] ${what}: ${(ms / 1000).toFixed(1)} s\n`);

beforeAll(async () => {
  const t0 = Date.now();
  buildDist();
  ensureWine();
  mkdirSync(SERVICES_DIR, { recursive: true });
  outDir = mkdtempSync(join(SERVICES_DIR, 'zips-'));
  // Assigned as each part is ready, so that afterAll ends what started even if another part failed.
  const [p1, p2] = await Promise.all([
    packageZip(V1, outDir),
    packageZip(V2, outDir),
    createPrefix().then((p) => (prefix = p)),
    startProxyProcess().then((p) => (proxy = p)),
  ]);
  measure('package:windows (two builds in parallel)', Math.max(p1.ms, p2.ms));
  zips = { v1: p1.zip, v2: p2.zip };
  measure('set-up (build, packages, prefix, proxy)', Date.now() - t0);
}, 240_000);

afterAll(async () => {
  await stopAll();
  // The service's logs and every Wine command's output stay for a look after a failure.
  if (prefix) keepLogs(prefix, [`${DATA}\\logs`], join(SERVICES_DIR, 'last-run-logs'));
  await prefix?.destroy();
  await proxy?.stop();
  if (outDir) rmSync(outDir, { recursive: true, force: true });
});

async function agentRow(agentId: string): Promise<AgentRow | undefined> {
  return (await proxy.call<AgentRow[]>('GET', `/v1/agents?pool=${proxy.pool}`)).find((a) => a.agentId === agentId);
}

async function waitOnline(agentId: string, version: string, timeoutMs = 90_000): Promise<void> {
  await waitFor(async () => {
    const row = await agentRow(agentId);
    return row?.status === 'online' && row.version === version;
  }, timeoutMs, 500).catch(async () => {
    throw new Error(`${agentId} ${version} not online: ${JSON.stringify(await agentRow(agentId))}\n${logs()}`);
  });
}

async function enqueuePing(delayMs = 0): Promise<string> {
  return (await proxy.call<{ id: string }>('POST', '/v1/jobs', { pool: proxy.pool, type: 'ping', payload: { delayMs } })).id;
}

async function finished(id: string, timeoutMs = 60_000): Promise<JobView> {
  let view: JobView | undefined;
  await waitFor(async () => {
    view = await proxy.call<JobView>('GET', `/v1/jobs/${id}?waitMs=2000`);
    return ['succeeded', 'failed', 'cancelled'].includes(view.status);
  }, timeoutMs, 0);
  return view!;
}

/** Every log file of the service (agent.log and its rotated predecessors), oldest first. */
function logs(): string {
  const dir = prefix.linuxPath(`${DATA}\\logs`);
  try {
    return readdirSync(dir)
      .sort()
      .map((f) => readFileSync(join(dir, f), 'utf8'))
      .join('');
  } catch {
    return '(no logs)';
  }
}

/** Config and token the way an administrator leaves them before `install.cmd`. */
async function prepareMachine(agentId: string, shutdownGraceMs = 20_000, envLines: string[] = []): Promise<void> {
  const config = {
    proxy: { url: proxy.url, waitMs: 5000 },
    concurrency: 4,
    shutdownGraceMs,
    health: { host: '127.0.0.1', port: await freePort() },
    log: { level: 'info', format: 'json' },
    resources: {},
  };
  writeWinFile(prefix, `${DATA}\\agent.json`, JSON.stringify(config, null, 2));
  // agent.env reaches the service's environment (AGENT_ID proves it; HTTPS_PROXY would go here).
  writeWinFile(prefix, `${DATA}\\agent.env`, ['# service environment', `AGENT_ID=${agentId}`, ...envLines, ''].join('\r\n'));
  writeWinFile(prefix, 'C:\\install\\token.txt', proxy.agentToken);
}

async function ok(r: Promise<{ code: number; out: string }>, what: string): Promise<string> {
  const { code, out } = await r;
  if (code !== 0) throw new Error(`${what} exited ${code}:\n${out}\nservice log (tail):\n${logs().slice(-3000)}`);
  return out;
}

describe('Windows service under Wine', () => {
  it('install → net start → job → net stop drains → upgrade → uninstall', async () => {
    const t0 = Date.now();
    const dir1 = unpack(prefix, zips.v1);
    await prepareMachine('win-agent');
    await ok(prefix.cmd(`${dir1}\\install.cmd`, ['C:\\install\\token.txt'], { env: SVC_ENV }), 'install.cmd');
    expect(await prefix.serviceState(SERVICE)).toBe('STOPPED');
    expect(readFileSync(prefix.linuxPath(`${DATA}\\agent-token`), 'utf8')).toBe(proxy.agentToken);
    // The administrator's check, from the program folder with the service's config and token.
    const check = await ok(prefix.cmd(`${dir1}\\agent.cmd`, ['check']), 'agent.cmd check');
    expect(check).toMatch(new RegExp(`proxy ${proxy.url.replace(/[.:/]/g, '\\$&')}\\s+ok`));
    expect(check).not.toContain(proxy.agentToken);

    const tStart = Date.now();
    await ok(prefix.wine(['net', 'start', SERVICE]), 'net start');
    await waitOnline('win-agent', V1);
    measure('service start → agent online', Date.now() - tStart);
    const first = await finished(await enqueuePing());
    expect(first).toMatchObject({ status: 'succeeded', agentId: 'win-agent' });

    // net stop during a 10 s job: drained within the grace (20 s), or released to the Linux agent.
    const long = await enqueuePing(10_000);
    await waitFor(async () => (await proxy.call<JobView>('GET', `/v1/jobs/${long}`)).status === 'leased', 30_000, 200);
    const linux = startAgentProcess('linux-agent', { AGENT_PROXY_URL: proxy.url, AGENT_TOKEN: proxy.agentToken, AGENT_ID: 'linux-agent', AGENT_WAIT_MS: '2000', HTTPS_PROXY: '', https_proxy: '' });
    await linux.waitForLine(/"agent started"/, 30_000);
    const tStop = Date.now();
    await ok(prefix.wine(['net', 'stop', SERVICE]), 'net stop');
    await prefix.waitForState(SERVICE, 'STOPPED', 60_000);
    measure('net stop during a 10 s job → STOPPED', Date.now() - tStop);
    const drained = await finished(long);
    process.stdout.write(`[measure] job during net stop: ${drained.status} by ${drained.agentId}, attempt ${drained.attempt}\n`);
    expect(drained.status).toBe('succeeded');
    if (drained.agentId === 'linux-agent') expect(drained.attempt).toBe(1);
    else expect(drained.agentId).toBe('win-agent');
    expect(logs()).toMatch(/received SIGINT/);
    expect(logs()).not.toContain(proxy.agentToken);
    await linux.stop();

    // Running again, for an upgrade with a job in flight.
    await ok(prefix.wine(['net', 'start', SERVICE]), 'net start');
    await waitFor(async () => (await finished(await enqueuePing())).agentId === 'win-agent', 60_000, 0);

    // Upgrade: unpack the second build beside the first and run its upgrade.cmd.
    const configBefore = readFileSync(prefix.linuxPath(`${DATA}\\agent.json`), 'utf8');
    const dir2 = unpack(prefix, zips.v2);
    expect(dir2).not.toBe(dir1);
    // A job in flight during the upgrade: drained by the old version (or released and run by the new one).
    const during = await enqueuePing(3000);
    await waitFor(async () => (await proxy.call<JobView>('GET', `/v1/jobs/${during}`)).status === 'leased', 30_000, 200);
    const tUp = Date.now();
    await ok(prefix.cmd(`${dir2}\\upgrade.cmd`, [], { env: SVC_ENV }), 'upgrade.cmd');
    await waitOnline('win-agent', V2);
    measure('upgrade.cmd → new version online', Date.now() - tUp);
    // NSSM reports START_PENDING for AppThrottle (5 s) after a start.
    await prefix.waitForState(SERVICE, 'RUNNING', 30_000);
    expect(await finished(during)).toMatchObject({ status: 'succeeded', agentId: 'win-agent', attempt: 1 });
    const after = await finished(await enqueuePing());
    expect(after).toMatchObject({ status: 'succeeded', agentId: 'win-agent' });
    expect(readFileSync(prefix.linuxPath(`${DATA}\\agent.json`), 'utf8')).toBe(configBefore);
    expect(readFileSync(prefix.linuxPath(`${DATA}\\agent-token`), 'utf8')).toBe(proxy.agentToken);
    // The service no longer needs the old folder: its binary (NSSM) and program are the new ones.
    const image = await ok(prefix.wine(['reg', 'query', `HKLM\\SYSTEM\\CurrentControlSet\\Services\\${SERVICE}`, '/v', 'ImagePath']), 'reg query');
    expect(image).toContain(`"${dir2}\\nssm64.exe"`);
    rmSync(prefix.linuxPath(dir1), { recursive: true, force: true });
    await ok(prefix.cmd(`${dir2}\\stop-service.cmd`), 'stop-service.cmd');
    await ok(prefix.wine(['net', 'start', SERVICE]), 'net start');
    await prefix.waitForState(SERVICE, 'RUNNING', 30_000);
    expect(await finished(await enqueuePing())).toMatchObject({ status: 'succeeded', agentId: 'win-agent' });

    await ok(prefix.cmd(`${dir2}\\uninstall.cmd`), 'uninstall.cmd');
    expect(await prefix.serviceState(SERVICE)).toBe('MISSING');
    expect(prefix.pids('node.exe')).toEqual([]);
    // Config, token and logs stay for a reinstall.
    expect(readFileSync(prefix.linuxPath(`${DATA}\\agent.json`), 'utf8')).toBe(configBefore);
    measure('lifecycle test', Date.now() - t0);
  }, 300_000);

  it('NSSM restarts node.exe after it is killed; uninstall during a job past the grace releases it', async () => {
    const t0 = Date.now();
    const dir = unpack(prefix, zips.v2);
    await ok(prefix.cmd(`${dir}\\uninstall.cmd`), 'uninstall.cmd (a left-over service)');
    await prepareMachine('win-crash', 2000, ['OUTPOST_STOP_TIMEOUT_MS=12000']);
    // A small rotation size shows NSSM's rotation working (10 MB by default).
    await ok(prefix.cmd(`${dir}\\install.cmd`, ['C:\\install\\token.txt'], { env: { ...SVC_ENV, OUTPOST_LOG_ROTATE_BYTES: '2000' } }), 'install.cmd');
    // NSSM's stop timeout comes from agent.env (above this agent's 2 s grace).
    expect(await ok(prefix.wine([`${dir}\\nssm64.exe`, 'get', SERVICE, 'AppStopMethodConsole']), 'nssm get')).toMatch(/^12000$/m);
    // A stop within NSSM's start-up window (START_PENDING, 5 s) left the service RUNNING for good before
    // stop-service.cmd waited that window out (CI: upgrade.cmd 4 s after a start).
    await ok(prefix.wine(['net', 'start', SERVICE]), 'net start');
    await new Promise((r) => setTimeout(r, 2500));
    await ok(prefix.cmd(`${dir}\\stop-service.cmd`), 'stop-service.cmd during START_PENDING');
    expect(await prefix.serviceState(SERVICE)).toBe('STOPPED');
    await ok(prefix.wine(['net', 'start', SERVICE]), 'net start');
    await waitOnline('win-crash', V2);
    const [pid] = prefix.pids('node.exe');
    expect(pid).toBeGreaterThan(0);
    const startedBefore = (logs().match(/"agent started"/g) ?? []).length;
    process.kill(pid!, 'SIGKILL');
    await waitFor(() => prefix.pids('node.exe').some((p) => p !== pid), 60_000, 500);
    await waitFor(() => (logs().match(/"agent started"/g) ?? []).length > startedBefore, 90_000, 500);
    await prefix.waitForState(SERVICE, 'RUNNING', 30_000);
    expect(await finished(await enqueuePing())).toMatchObject({ status: 'succeeded', agentId: 'win-crash' });
    // NSSM renamed agent.log once it passed AppRotateBytes.
    expect(readdirSync(prefix.linuxPath(`${DATA}\\logs`)).filter((f) => /^agent-.*\.log$/.test(f)).length).toBeGreaterThan(0);

    // uninstall.cmd during a job longer than the grace (2 s here): released, re-run elsewhere, same attempt.
    const long = await enqueuePing(8000);
    await waitFor(async () => (await proxy.call<JobView>('GET', `/v1/jobs/${long}`)).status === 'leased', 30_000, 200);
    const linux = startAgentProcess('linux-agent-2', { AGENT_PROXY_URL: proxy.url, AGENT_TOKEN: proxy.agentToken, AGENT_ID: 'linux-agent-2', AGENT_WAIT_MS: '2000', HTTPS_PROXY: '', https_proxy: '' });
    await linux.waitForLine(/"agent started"/, 30_000);
    await ok(prefix.cmd(`${dir}\\uninstall.cmd`), 'uninstall.cmd');
    expect(await prefix.serviceState(SERVICE)).toBe('MISSING');
    expect(await finished(long)).toMatchObject({ status: 'succeeded', agentId: 'linux-agent-2', attempt: 1 });
    expect(logs()).toMatch(/received SIGINT/);
    await linux.stop();
    measure('crash-restart and release test', Date.now() - t0);
  }, 240_000);
});
