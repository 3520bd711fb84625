import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { JobView } from '../../lib/protocol/schemas.js';
import { waitFor } from '../fixtures/net.js';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { buildDist, ROOT, startAgentProcess, startProxyProcess, stopAll, type Proc, type ProxyProc } from '../fixtures/processes.js';

/**
 * The Agents dashboard end to end, as a person sees it: a real proxy and two
 * real agents, Debian's Chromium driven by playwright-core. Stop one agent
 * mid-job: the page shows it offline and the job finished on the other.
 */
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
let proxy: ProxyProc;
let browser: Browser;
let page: Page;
const agents = new Map<string, Proc>();

async function startAgent(id: string): Promise<void> {
  const p = startAgentProcess(id, {
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
  // Short lease and presence so that failover and "offline" show within seconds.
  proxy = await startProxyProcess({ leaseTtlMs: 1500, reaperIntervalMs: 200, env: { PROXY_PRESENCE_MS: '2500' } });
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
  it('shows both agents online, then one offline after it is killed, and its job finished on the other', async () => {
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
    // Without a token the page asks for one and shows no data.
    await expect(page.locator('#login').isVisible()).resolves.toBe(true);
    await page.fill('#token', viewerToken);
    await page.click('#tokenForm button');
    await page.waitForSelector('tr.agent[data-agent="dash-a"]');
    await page.waitForSelector('tr.agent[data-agent="dash-b"]');
    expect(await statusOf('dash-a')).toBe('online');
    expect(await statusOf('dash-b')).toBe('online');
    await expect(page.locator(`section.pool[data-pool="${proxy.pool}"] h2`).innerText()).resolves.toContain('2 of 2 online');

    const id = (await proxy.call<{ id: string }>('POST', '/v1/jobs', { pool: proxy.pool, type: 'ping', payload: { delayMs: 2500 } })).id;
    let view: JobView | undefined;
    await waitFor(async () => (view = await proxy.call<JobView>('GET', `/v1/jobs/${id}`)).status === 'leased', 10_000, 20);
    const victim = view!.agentId!;
    const survivor = victim === 'dash-a' ? 'dash-b' : 'dash-a';
    await page.waitForSelector(`tr.job[data-job="${id}"][data-status="leased"][data-agent="${victim}"]`, { timeout: 10_000 });
    agents.get(victim)!.child.kill('SIGKILL');

    await page.waitForSelector(`tr.job[data-job="${id}"][data-status="succeeded"][data-agent="${survivor}"]`, { timeout: 20_000 });
    await page.waitForSelector(`tr.agent[data-agent="${victim}"][data-status="offline"]`, { timeout: 15_000 });
    expect(await statusOf(survivor)).toBe('online');
    await expect(page.locator(`tr.job[data-job="${id}"] td:nth-child(6)`).innerText()).resolves.toBe('2/3');
    // Kept for a person to look at: .test-results/dashboard.png
    mkdirSync(join(ROOT, '.test-results'), { recursive: true });
    const shot = await page.screenshot({ fullPage: true, path: join(ROOT, '.test-results/dashboard.png') });
    expect(shot.length).toBeGreaterThan(1000);
    // The token is never put in the page's URL; nothing on the page was blocked by its CSP.
    expect(page.url()).not.toContain(viewerToken);
    expect(violations).toEqual([]);
  }, 60_000);
});
