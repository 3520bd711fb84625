import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { JobView } from '../../lib/protocol/schemas.js';
import { freePort, waitFor } from '../fixtures/net.js';
import { ROOT, buildDist, spawnProcess, startAgentProcess, startProxyProcess, stopAll, type Proc, type ProxyProc } from '../fixtures/processes.js';

/**
 * A real agent and a real integration-proxy: `/readyz` is 200 within 2 s of
 * the agent's start; then the proxy process is stopped for OUTAGE_MS (default
 * 30 s; the closing note's figures come from a run with OUTAGE_MS=60000) and
 * started again on the same port and store. While it is away the agent sends
 * at most one request per 10 s once backed off (1 s, 2 s, 4 s, 8 s, then
 * 10–11.5 s: lib/util/backoff.ts PROXY_BACKOFF), and it is back (a job
 * enqueued at the return is leased) within 12 s of the proxy's return.
 */
const OUTAGE_MS = Number(process.env.OUTAGE_MS ?? 30_000);
let proxy: ProxyProc;
let restarted: Proc | undefined;

beforeAll(async () => {
  buildDist();
  proxy = await startProxyProcess();
}, 90_000);

afterAll(async () => {
  await stopAll();
  await restarted?.stop();
  await proxy?.stop();
  if (proxy) rmSync(proxy.dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function readyz(port: number): Promise<number> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1000) })).status;
  } catch {
    return 0;
  }
}

/** The same proxy again: same port, same SQLite store, same admin token (so the agent's token still holds). */
async function restartProxy(): Promise<number> {
  const port = new URL(proxy.url).port;
  restarted = spawnProcess(join(ROOT, 'bin/integration-proxy'), ['start'], {
    name: 'integration-proxy-2',
    env: {
      ...process.env,
      PROXY_HOST: '127.0.0.1',
      PROXY_PORT: port,
      PROXY_STORE: `sqlite:${join(proxy.dir, 'proxy.db')}`,
      PROXY_ADMIN_TOKEN: proxy.adminToken,
      PROXY_LEASE_TTL_MS: '30000',
      PROXY_REAPER_INTERVAL_MS: '1000',
    },
  });
  let upAt = 0;
  await waitFor(async () => {
    try {
      const ok = (await fetch(`${proxy.url}/readyz`, { signal: AbortSignal.timeout(500) })).status === 200;
      if (ok) upAt = Date.now();
      return ok;
    } catch {
      return false;
    }
  }, 20_000, 10);
  return upAt;
}

async function enqueuePing(): Promise<string> {
  return (await proxy.call<{ id: string }>('POST', '/v1/jobs', { pool: proxy.pool, type: 'ping', payload: {} })).id;
}

async function done(id: string): Promise<JobView> {
  let view: JobView | undefined;
  await waitFor(async () => {
    view = await proxy.call<JobView>('GET', `/v1/jobs/${id}?waitMs=2000`);
    return view.status === 'succeeded';
  }, 30_000, 0);
  return view!;
}

describe('readiness at start, and the outage backoff (real processes)', () => {
  it(`ready within 2 s; during a ${OUTAGE_MS / 1000} s outage ≤ 1 request per 10 s once backed off; back within 12 s`, async () => {
    const healthPort = await freePort();
    const spawnedAt = Date.now();
    const agent = startAgentProcess('outage', {
      HTTPS_PROXY: '',
      https_proxy: '',
      HTTP_PROXY: '',
      http_proxy: '',
      AGENT_PROXY_URL: proxy.url,
      AGENT_TOKEN: proxy.agentToken,
      AGENT_ID: 'outage',
      AGENT_HEALTH_PORT: String(healthPort),
      AGENT_SHUTDOWN_GRACE_MS: '0',
    });
    let readyAt = 0;
    await waitFor(async () => (await readyz(healthPort)) === 200 && (readyAt = Date.now()) > 0, 20_000, 20);
    const started = JSON.parse(await agent.waitForLine(/"agent started"/)) as { timestamp: string };
    const startToReadyMs = readyAt - Date.parse(started.timestamp);
    // The default 25 s poll is parked now: readiness must not wait for it to complete.
    expect(startToReadyMs).toBeLessThanOrEqual(2000);
    expect((await done(await enqueuePing())).agentId).toBe('outage');

    await proxy.proc.stop();
    const downAt = Date.now();
    await sleep(OUTAGE_MS);
    const upAt = await restartProxy();
    const id = await enqueuePing();
    const job = await done(id);
    const backMs = Date.parse(job.startedAt!) - upAt;
    await agent.waitForLine(/integration-proxy reachable again/, 5000);
    await agent.stop();

    const failures = agent
      .jsonLines()
      .filter((l) => l.message === 'lease request failed')
      .map((l) => Date.parse(String(l.timestamp)))
      .filter((t) => t >= downAt && t <= upAt);
    const gaps = failures.slice(1).map((t, i) => t - failures[i]!);
    const backedOff = failures.filter((t) => t - failures[0]! >= 15_000);
    process.stdout.write(
      `outage: spawn→/readyz 200 ${readyAt - spawnedAt} ms ("agent started"→200 ${startToReadyMs} ms); outage ${upAt - downAt} ms; ` +
        `requests while down ${failures.length} (gaps ${gaps.join(', ')} ms); back ${backMs} ms after the proxy's return\n`,
    );
    expect(failures.length).toBeGreaterThanOrEqual(5);
    // Once backed off (after 1 + 2 + 4 + 8 s): at most one request in any 10 s.
    for (const t of backedOff) expect(backedOff.filter((u) => u >= t && u < t + 10_000).length).toBe(1);
    for (const g of gaps.slice(4)) expect(g).toBeGreaterThanOrEqual(9990);
    // A job enqueued as the proxy came back was leased within 12 s.
    expect(backMs).toBeLessThanOrEqual(12_000);
    expect(job.agentId).toBe('outage');
  }, OUTAGE_MS + 90_000);
});
