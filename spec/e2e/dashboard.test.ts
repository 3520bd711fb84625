import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { JobView } from '../../lib/protocol/schemas.js';
import { waitFor } from '../fixtures/net.js';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { buildDist, ROOT, startAgentProcess, startProxyProcess, stopAll, type Proc, type ProxyProc } from '../fixtures/processes.js';

/**
 * The Agents dashboard end to end, as a person sees it: a real proxy and
 * real agents, Debian's Chromium driven by playwright-core. Kill one agent
 * mid-job: the page shows it stale and the job's two attempts on two agents;
 * a failed job shows its error; a stopping agent shows draining, then offline;
 * agents older than the latest version are flagged outdated.
 * Screenshots go to SCREENSHOT_DIR (default .test-results/).
 */
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
let proxy: ProxyProc;
let browser: Browser;
let page: Page;
const agents = new Map<string, Proc>();
const SHOTS = process.env.SCREENSHOT_DIR || join(ROOT, '.test-results');
const shoot = async (name: string) => {
  mkdirSync(SHOTS, { recursive: true });
  const png = await page.screenshot({ fullPage: true, path: join(SHOTS, name) });
  expect(png.length).toBeGreaterThan(1000);
};

async function startAgent(id: string, env: NodeJS.ProcessEnv = {}): Promise<void> {
  const p = startAgentProcess(id, {
    ...env,
    AGENT_PROXY_URL: proxy.url,
    AGENT_TOKEN: proxy.agentToken,
    AGENT_ID: id,
    AGENT_WAIT_MS: '1000',
    AGENT_LOG_LEVEL: 'warn',
  });
  agents.set(id, p);
  await waitFor(async () => (await proxy.call<Array<{ agentId: string }>>('GET', '/v1/agents')).some((a) => a.agentId === id), 15_000, 50);
}

const statusOf = (agentId: string) => page.locator(`tr.agent[data-agent="${agentId}"]`).getAttribute('data-status');

beforeAll(async () => {
  buildDist();
  // Short lease so that failover shows within seconds; agents poll with a 1 s hold, so a killed one is stale after 6 s.
  // Unknown types are accepted so that an agent fails one (unknown_type); the agents (0.1.0) are older than latest.
  proxy = await startProxyProcess({
    leaseTtlMs: 1500,
    reaperIntervalMs: 200,
    env: { PROXY_PRESENCE_MS: '60000', PROXY_ACCEPT_UNKNOWN_TYPES: 'true', PROXY_AGENT_LATEST_VERSION: '0.2.0' },
  });
  await Promise.all([startAgent('dash-a'), startAgent('dash-b')]);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = await browser.newPage();
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await stopAll();
});

describe('Agents dashboard in a browser', () => {
  it('shows both agents online, then one stale after kill -9, and the job\'s two attempts on two agents', async () => {
    // Signed in with a read-only viewer token made by the CLI, as the README says; the page runs under its CSP.
    const viewer = spawnSync(join(ROOT, 'bin/integration-proxy'), ['token', 'create', '--pool', proxy.pool, '--role', 'viewer'], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, PROXY_STORE: `sqlite:${join(proxy.dir, 'proxy.db')}` },
    });
    const viewerToken = viewer.stdout.trimEnd().split('\n').pop()!;
    expect(viewer.status).toBe(0);
    const violations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text());
    });
    const res = await page.goto(proxy.url + '/');
    const headers = res!.headers();
    expect(headers['content-security-policy']).toMatch(/default-src 'none'.*script-src 'sha256-/);
    expect(headers['x-frame-options']).toBe('DENY');
    expect(headers['referrer-policy']).toBe('no-referrer');
    expect(headers['x-content-type-options']).toBe('nosniff');
    expect(await page.title()).toBe('Outpost — Agents');
    // Without a token the page asks for one, says which, and shows no data.
    await expect(page.locator('#login').isVisible()).resolves.toBe(true);
    await expect(page.locator('#login').innerText()).resolves.toMatch(/viewer[\s\S]*admin token[\s\S]*token create --pool NAME --role viewer/);
    await expect(page.locator('#app').isVisible()).resolves.toBe(false);
    await page.setViewportSize({ width: 1280, height: 720 });
    await shoot('dashboard-signin.png');
    await page.fill('#token', proxy.agentToken);
    await page.click('#tokenForm button');
    await page.waitForSelector('#err:has-text("403")');
    await expect(page.locator('#err').innerText()).resolves.toMatch(/use a viewer or admin token/);
    await page.fill('#token', viewerToken);
    await page.click('#tokenForm button');
    await page.waitForSelector('tr.agent[data-agent="dash-a"]');
    await page.waitForSelector('tr.agent[data-agent="dash-b"]');
    expect(await statusOf('dash-a')).toBe('online');
    expect(await statusOf('dash-b')).toBe('online');
    await expect(page.locator(`section.pool[data-pool="${proxy.pool}"] h2`).innerText()).resolves.toContain('2 of 2 online');

    await expect(page.locator('tr.agent[data-agent="dash-a"] .s-outdated').innerText()).resolves.toBe('outdated');
    const id = (await proxy.call<{ id: string }>('POST', '/v1/jobs', { pool: proxy.pool, type: 'ping', payload: { delayMs: 2500 } })).id;
    let view: JobView | undefined;
    await waitFor(async () => (view = await proxy.call<JobView>('GET', `/v1/jobs/${id}`)).status === 'leased', 10_000, 20);
    const victim = view!.agentId!;
    const survivor = victim === 'dash-a' ? 'dash-b' : 'dash-a';
    await page.waitForSelector(`tr.job[data-job="${id}"][data-status="leased"][data-agent="${victim}"]`, { timeout: 10_000 });
    // Its in-flight job is listed by id on the agent's row.
    await page.waitForSelector(`tr.agent[data-agent="${victim}"] a.job[data-open="${id}"]`, { timeout: 5000 });
    agents.get(victim)!.child.kill('SIGKILL');

    await page.waitForSelector(`tr.job[data-job="${id}"][data-status="succeeded"][data-agent="${survivor}"]`, { timeout: 20_000 });
    await page.waitForSelector(`tr.agent[data-agent="${victim}"][data-status="stale"]`, { timeout: 15_000 });
    expect(await statusOf(survivor)).toBe('online');
    await expect(page.locator(`section.pool[data-pool="${proxy.pool}"] h2`).innerText()).resolves.toMatch(/1 of 2 online.*1 stale/);
    await expect(page.locator(`tr.job[data-job="${id}"] td:nth-child(6)`).innerText()).resolves.toBe('2/3');
    // Human times, the exact one on hover.
    const created = page.locator(`tr.job[data-job="${id}"] td:nth-child(8) span`);
    await expect(created.innerText()).resolves.toMatch(/^(just now|\d+ s ago)$/);
    await expect(created.getAttribute('title')).resolves.toMatch(/\d{4}-\d\d-\d\dT/);
    // The job's detail: attempt 1 on the killed agent (its lease expired), attempt 2 on the survivor.
    await page.click(`tr.job[data-job="${id}"]`);
    await page.waitForSelector('#detail tr.attempt:nth-child(2)');
    const attempts = await page.locator('#detail tr.attempt').evaluateAll((rows) => rows.map((r) => [r.getAttribute('data-agent'), r.getAttribute('data-outcome')]));
    expect(attempts).toEqual([[victim, 'expired'], [survivor, 'succeeded']]);
    await shoot('dashboard-stale-and-attempts.png');
    // The token is never put in the page's URL; nothing on the page was blocked by its CSP.
    expect(page.url()).not.toContain(viewerToken);
    expect(violations).toEqual([]);
  }, 60_000);

  it('shows a failed job\'s error code and message, filters by status, and a stopping agent draining then offline', async () => {
    const failed = (await proxy.call<{ id: string }>('POST', '/v1/jobs', { pool: proxy.pool, type: 'noSuchType', maxAttempts: 1 })).id;
    await waitFor(async () => (await proxy.call<JobView>('GET', `/v1/jobs/${failed}`)).status === 'failed', 15_000, 50);
    const row = page.locator(`tr.job[data-job="${failed}"][data-status="failed"] td.error`);
    await row.waitFor({ timeout: 10_000 });
    await expect(row.innerText()).resolves.toMatch(/^unknown_type .*noSuchType/);
    await page.selectOption('#fJob', 'failed');
    await page.waitForFunction(() => [...(globalThis as any).document.querySelectorAll('tr.job')].every((r: any) => r.getAttribute('data-status') === 'failed'));
    await page.click(`tr.job[data-job="${failed}"]`);
    await page.waitForSelector(`#detail tr.attempt[data-outcome="failed"]`);
    await expect(page.locator('#detail').innerText()).resolves.toMatch(/unknown_type/);
    await shoot('dashboard-failed-job.png');
    await page.click('#closeDetail');
    await page.selectOption('#fJob', '');

    // A third agent with a long job, stopped with SIGTERM: draining while the job runs, then offline.
    await startAgent('dash-c', { AGENT_SHUTDOWN_GRACE_MS: '20000' });
    await page.waitForSelector('tr.agent[data-agent="dash-c"][data-status="online"]');
    const survivor = [...agents.keys()].find((k) => k !== 'dash-c' && agents.get(k)!.child.exitCode === null && agents.get(k)!.child.signalCode === null)!;
    await agents.get(survivor)!.stop();
    await page.waitForSelector(`tr.agent[data-agent="${survivor}"][data-status="offline"]`, { timeout: 5000 });
    const slow = (await proxy.call<{ id: string }>('POST', '/v1/jobs', { pool: proxy.pool, type: 'ping', payload: { delayMs: 4000 } })).id;
    await page.waitForSelector(`tr.agent[data-agent="dash-c"] a.job[data-open="${slow}"]`, { timeout: 10_000 });
    agents.get('dash-c')!.child.kill('SIGTERM');
    await page.waitForSelector('tr.agent[data-agent="dash-c"][data-status="draining"]', { timeout: 5000 });
    await shoot('dashboard-draining.png');
    await page.waitForSelector('tr.agent[data-agent="dash-c"][data-status="offline"]', { timeout: 15_000 });
    expect((await proxy.call<JobView>('GET', `/v1/jobs/${slow}`)).status).toBe('succeeded');
    await page.selectOption('#fAgent', 'offline');
    await page.waitForFunction(() => [...(globalThis as any).document.querySelectorAll('tr.agent')].every((r: any) => r.getAttribute('data-status') === 'offline'));
    await shoot('dashboard-filter-offline.png');
    await page.selectOption('#fAgent', '');
  }, 60_000);
});
