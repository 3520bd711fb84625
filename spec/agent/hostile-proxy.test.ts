import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MAX_ANSWER_BYTES } from '../../lib/agent/answers.js';
import type { LeasedJob, ResultItem } from '../../lib/protocol/schemas.js';
import { waitFor } from '../fixtures/net.js';
import { captureLogger, startAgent, stopAgents, testAgentConfig } from './harness.js';

/**
 * A real agent (createAgent, in process) against a fake integration-proxy
 * that answers what a hostile or broken one could: a month of Retry-After,
 * a lease TTL and job timeout of 9e9 ms, 10 000 jobs for `max: 4`, a 200 MB
 * answer, a job of type `constructor`. The scenario rides in the agentId.
 */
const TOKEN = 'hostile-proxy-agent-token-0123456789';

interface Seen {
  leases: Array<{ max: number; waitMs: number; atMs: number }>;
  heartbeats: number;
  released: string[];
  results: ResultItem[];
  /** Bytes of a huge answer written before the agent hung up. */
  written: number;
}
const seen = new Map<string, Seen>();
const state = (agentId: string): Seen => {
  let s = seen.get(agentId);
  if (!s) seen.set(agentId, (s = { leases: [], heartbeats: 0, released: [], results: [], written: 0 }));
  return s;
};

function job(id: string, over: Partial<LeasedJob> = {}): LeasedJob {
  return { id, type: 'ping', resource: null, payload: {}, attempt: 1, leaseToken: `lease-token-${id}-0123456789`, leaseTtlMs: 30_000, timeoutMs: 60_000, ...over };
}

const FIRST_ANSWER: Record<string, () => LeasedJob[]> = {
  ttl: () => [job('ttl-1', { payload: { delayMs: 1500 }, leaseTtlMs: 9e9, timeoutMs: 9e9 })],
  many: () => Array.from({ length: 10_000 }, (_, i) => job(`many-${i}`, { payload: { delayMs: 200 } })),
  ctor: () => [job('ctor-1', { type: 'constructor' })],
};

function handler(req: IncomingMessage, res: ServerResponse): void {
  const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
    if (res.writableEnded || res.destroyed) return;
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
  let text = '';
  req.setEncoding('utf8').on('data', (c: string) => (text += c));
  req.on('end', () => {
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return send(401, { error: { code: 'unauthorized', message: 'no' } });
    const body = JSON.parse(text) as { agentId: string; max?: number; waitMs?: number; leases?: Array<{ jobId: string }>; results?: ResultItem[] };
    const mode = body.agentId.split('-')[0]!;
    const s = state(body.agentId);
    switch (req.url) {
      case '/v1/agent/lease': {
        s.leases.push({ max: body.max!, waitMs: body.waitMs!, atMs: Date.now() });
        if (mode === 'month') return send(503, { error: { code: 'unavailable', message: 'busy' } }, { 'retry-after': String(30 * 24 * 3600) });
        if (mode === 'huge') return huge(res, s);
        if (s.leases.length === 1 && FIRST_ANSWER[mode]) return send(200, { jobs: FIRST_ANSWER[mode]!() });
        // Later polls are held for their wait, as a real proxy does with no work.
        const t = setTimeout(() => send(200, { jobs: [] }), body.waitMs);
        res.once('close', () => clearTimeout(t));
        return;
      }
      case '/v1/agent/heartbeat':
        s.heartbeats++;
        return send(200, { leases: (body.leases ?? []).map((l) => ({ jobId: l.jobId, status: 'ok', leaseTtlMs: 9e9 })) });
      case '/v1/agent/release':
        s.released.push(...(body.leases ?? []).map((l) => l.jobId));
        return send(200, { leases: (body.leases ?? []).map((l) => ({ jobId: l.jobId, status: 'released' })) });
      case '/v1/agent/results':
        s.results.push(...(body.results ?? []));
        return send(200, { results: (body.results ?? []).map((r) => ({ jobId: r.jobId, status: 'accepted' })) });
      default:
        return send(404, { error: { code: 'not_found', message: 'no' } });
    }
  });
}

/** 200 MB of answer, written as fast as the agent reads it, until it hangs up. */
function huge(res: ServerResponse, s: Seen): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.write('{"jobs":[');
  const chunk = Buffer.alloc(1 << 20, 0x20);
  let closed = false;
  res.once('close', () => (closed = true));
  const pump = () => {
    while (!closed && s.written < 200 * 1024 * 1024) {
      s.written += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', pump);
    }
    if (!closed) res.end(']}');
  };
  pump();
}

let server: Server;
let url: string;
beforeAll(async () => {
  server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterEach(() => stopAgents());
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

async function agentFor(mode: string) {
  const cap = captureLogger();
  const agentId = `${mode}-${Math.random().toString(36).slice(2, 8)}`;
  const agent = await startAgent(testAgentConfig({ url, agentToken: TOKEN }, { agentId, concurrency: 4 }), { log: cap.log });
  return { agent, s: state(agentId), cap };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('an agent against a hostile integration-proxy', () => {
  it('Retry-After of a month: one request, then a wait of at most 5 minutes (no hot loop)', async () => {
    const { s, cap } = await agentFor('month');
    await waitFor(() => s.leases.length >= 1);
    await sleep(3000);
    // Before: the month overflowed Node's 32-bit timer into 1 ms, 1 460 lease calls in 10 s.
    expect(s.leases).toHaveLength(1);
    expect(cap.lines().find((l) => l.message === 'lease request failed')).toMatchObject({ code: 'unavailable', retryInMs: 300_000 });
  }, 20_000);

  it('leaseTtlMs and timeoutMs of 9e9: clamped, the job runs to success, heartbeats do not loop', async () => {
    const { s, cap } = await agentFor('ttl');
    await waitFor(() => s.results.length === 1, 10_000);
    expect(s.results[0]).toMatchObject({ jobId: 'ttl-1', outcome: 'succeeded' });
    // TTL clamped to 10 min: the first renewal would be due after ~200 s, not in a loop.
    expect(s.heartbeats).toBe(0);
    expect(cap.lines().filter((l) => l.message === 'heartbeat failed')).toEqual([]);
  }, 20_000);

  it('10 000 jobs for max 4: runs only the 4 it asked for, releases the 9 996 others unrun', async () => {
    const { s, cap } = await agentFor('many');
    await waitFor(() => s.released.length >= 9996 && s.results.length >= 4, 15_000);
    expect(s.leases[0]!.max).toBe(4);
    const ran = s.results.map((r) => r.jobId).sort();
    expect(ran).toEqual(['many-0', 'many-1', 'many-2', 'many-3']);
    expect(s.results.every((r) => r.outcome === 'succeeded')).toBe(true);
    expect(new Set(s.released).size).toBe(9996);
    expect(s.released.some((id) => ran.includes(id))).toBe(false);
    expect(cap.lines().find((l) => l.message === 'the integration-proxy sent jobs this agent cannot take; giving them back')).toMatchObject({ level: 'warn', refused: { beyond_max: 9996 }, asked: 4 });
    // Nothing released ever runs: after a while there are still exactly 4 results.
    await sleep(1000);
    expect(s.results).toHaveLength(4);
  }, 30_000);

  it('a 200 MB answer: refused clearly as too_large after at most 16 MiB, memory bounded', async () => {
    const rssBefore = process.memoryUsage().rss;
    const { s, cap } = await agentFor('huge');
    await waitFor(() => cap.lines().some((l) => l.message === 'lease request failed'), 15_000);
    const line = cap.lines().find((l) => l.message === 'lease request failed')!;
    expect(line).toMatchObject({ level: 'error', code: 'too_large', error: "the integration-proxy's answer to /agent/lease is larger than 16 MiB; refused without reading it" });
    // What the agent let in before it hung up: the cap plus socket buffers, not 200 MB (before: RSS 894 MB).
    expect(s.written).toBeLessThan(MAX_ANSWER_BYTES + 16 * 1024 * 1024);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(200 * 1024 * 1024);
  }, 30_000);

  it('job type `constructor` fails as unknown_type (not internal)', async () => {
    const { s } = await agentFor('ctor');
    await waitFor(() => s.results.length === 1, 10_000);
    expect(s.results[0]).toMatchObject({ jobId: 'ctor-1', outcome: 'failed', error: { code: 'unknown_type', message: 'unknown job type "constructor"', retryable: false } });
  }, 20_000);
});
