import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AGENT_SUITE_PROXY, startTestProxy, type TestProxy } from '../fixtures/proxy-server.js';
import { captureLogger, startAgent, stopAgents, testAgentConfig } from './harness.js';

/**
 * A new agent against an integration-proxy of the previous version: the real
 * proxy behind a shim that behaves as the previous version did on the wire.
 * Its lease answers have no `carries`, and a lease request with `results` or
 * `leases` is refused with 400 as its schema (no unknown fields) refused it.
 * `advertise` makes the shim list `carries` while still refusing the fields:
 * an older replica behind the same address as a newer one.
 */
class OldProxyShim {
  server: Server;
  url = '';
  carryingRequests = 0;
  constructor(
    private readonly target: string,
    private readonly advertise = false,
  ) {
    this.server = createServer((req, res) => {
      // A client gone before its answer (a stopped agent's parked poll) cuts the forwarded request too,
      // so that the proxy gives back what it would have leased to nobody.
      const gone = new AbortController();
      res.on('close', () => {
        if (!res.writableFinished) gone.abort();
      });
      this.handle(req, res.writeHead.bind(res), (b) => res.end(b), gone.signal).catch(() => res.destroy());
    });
  }
  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
  private async handle(req: IncomingMessage, head: (s: number, h: Record<string, string>) => void, end: (b: string) => void, signal: AbortSignal): Promise<void> {
    let body = '';
    for await (const chunk of req) body += chunk;
    const json = { 'content-type': 'application/json' };
    if (req.url === '/v1/agent/lease') {
      const parsed = JSON.parse(body) as Record<string, unknown>;
      if ('results' in parsed || 'leases' in parsed) {
        this.carryingRequests++;
        head(400, json);
        return end(JSON.stringify({ error: { code: 'invalid_request', message: 'body must NOT have additional properties' } }));
      }
    }
    const res = await fetch(this.target + req.url, { method: req.method, headers: { authorization: req.headers.authorization ?? '', 'content-type': 'application/json' }, ...(req.method === 'POST' ? { body } : {}), signal });
    let text = await res.text();
    if (req.url === '/v1/agent/lease' && res.status === 200 && !this.advertise) {
      const answer = JSON.parse(text) as Record<string, unknown>;
      delete answer.carries;
      text = JSON.stringify(answer);
    }
    head(res.status, json);
    end(text);
  }
}

let proxy: TestProxy;
beforeAll(async () => {
  proxy = await startTestProxy(AGENT_SUITE_PROXY);
});
afterAll(async () => {
  await proxy.stop();
});
afterEach(async () => {
  await stopAgents();
});

/** Enough short jobs to keep every slot busy, so that finished batches meet the next poll. */
const busyJobs = (n: number) => Array.from({ length: n }, () => ({ type: 'ping', payload: { delayMs: 20 } }));

describe('compatibility of results carried on lease requests', () => {
  it('a new agent against a proxy of the previous version carries nothing and reports through the results call', async () => {
    const shim = new OldProxyShim(proxy.url);
    await shim.start();
    try {
      const ids = await proxy.enqueueMany(busyJobs(30));
      const agent = await startAgent(testAgentConfig({ url: shim.url, agentToken: proxy.agentToken }, { concurrency: 4 }));
      const views = await Promise.all(ids.map((id) => proxy.done(id)));
      expect(views.every((v) => v.status === 'succeeded' && v.attempt === 1)).toBe(true);
      expect(shim.carryingRequests).toBe(0);
      expect(agent.stats().carriedResults).toBe(0);
      expect(agent.stats().requests['/agent/results']).toBeGreaterThan(0);
    } finally {
      await stopAgents();
      await shim.stop();
    }
  });

  it('an older replica that refuses the fields (400) loses no result: the agent resends them separately and stops carrying', async () => {
    const shim = new OldProxyShim(proxy.url, true);
    await shim.start();
    try {
      const ids = await proxy.enqueueMany(busyJobs(30));
      const cap = captureLogger('info');
      const agent = await startAgent(testAgentConfig({ url: shim.url, agentToken: proxy.agentToken }, { concurrency: 4 }), { log: cap.log });
      const views = await Promise.all(ids.map((id) => proxy.done(id)));
      // Every job ended once, on its first attempt: nothing was lost, nothing ran twice.
      expect(views.every((v) => v.status === 'succeeded' && v.attempt === 1)).toBe(true);
      // One refusal, then the agent carries nothing for its pause (5 min).
      expect(shim.carryingRequests).toBe(1);
      expect(cap.lines().filter((l) => l.level === 'warn').map((l) => l.message)).toEqual([
        'the integration-proxy refused results or renewals carried on a lease request; using the separate calls for a while',
      ]);
      expect(agent.stats().carriedResults).toBe(0);
      expect(agent.stats().requests['/agent/results']).toBeGreaterThan(0);
    } finally {
      await stopAgents();
      await shim.stop();
    }
  });
});
