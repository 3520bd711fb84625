import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createServer as createHttp, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttps } from 'node:https';
import type { AddressInfo } from 'node:net';
import { rmSync } from 'node:fs';
import { ProxyApi, isConnectionCut, parseRetryAfterMs } from '../../lib/agent/api.js';
import { MAX_ANSWER_BYTES } from '../../lib/agent/answers.js';
import { HttpTransport } from '../../lib/agent/http.js';
import { OutpostError } from '../../lib/util/errors.js';
import { freePort } from '../fixtures/net.js';
import { makeTestPki, type TestPki } from '../fixtures/tls.js';

const TOKEN = 'api-test-token-5d1e0b7c9a';
const lease = { agentId: 'a1', hostname: 'h', version: '0', resources: [], max: 1, waitMs: 0 };
/** Bytes the 'huge' answers managed to write before the client hung up. */
const written: Record<string, number> = {};

/** Streams `totalBytes` of a JSON-looking body, honouring backpressure, until done or the client hangs up. */
function stream(res: ServerResponse, key: string, totalBytes: number): void {
  const chunk = Buffer.alloc(1 << 20, 0x20);
  written[key] = 0;
  let closed = false;
  res.once('close', () => (closed = true));
  const pump = () => {
    while (!closed && written[key]! < totalBytes) {
      written[key]! += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', pump);
    }
    if (!closed) res.end();
  };
  pump();
}

/** The User-Agent of the last call. */
let lastUserAgent: string | undefined;

/** A real local server scripted per path: how the client maps each kind of answer. */
function handler(req: IncomingMessage, res: ServerResponse): void {
  const send = (status: number, body: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(body);
  };
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    res.once('finish', () => ((req.socket as { served?: number }).served = ((req.socket as { served?: number }).served ?? 0) + 1));
    // The scenario rides in agentId, so one server serves every case.
    const mode = (JSON.parse(body) as { agentId: string }).agentId;
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return send(401, '{"error":{"code":"unauthorized","message":"bad token"}}');
    switch (mode) {
      case 'ok':
        lastUserAgent = req.headers['user-agent'];
        return send(200, '{"jobs":[]}');
      case 'busy':
        return send(503, '{"error":{"code":"unavailable","message":"busy"}}', { 'retry-after': '3' });
      case 'slow-down':
        return send(429, '{"error":{"code":"rate_limited","message":"slow"}}', { 'retry-after': '2' });
      case 'malformed':
        return send(200, '{"jobs":"nope"}');
      case 'html':
        return send(502, '<html>bad gateway</html>');
      case 'bad':
        return send(400, '{"error":{"code":"invalid_request","message":"max: too big"}}');
      case 'hang':
        return; // never answers
      case 'month':
        return send(503, '{"error":{"code":"unavailable","message":"come back next month"}}', { 'retry-after': String(30 * 24 * 3600) });
      case 'month-date':
        return send(429, '{"error":{"code":"rate_limited","message":"later"}}', { 'retry-after': new Date(Date.now() + 30 * 24 * 3600_000).toUTCString() });
      case 'ttl':
        return send(200, '{"leases":[{"jobId":"j1","status":"ok","leaseTtlMs":9000000000},{"jobId":"j2","status":"ok","leaseTtlMs":5000}]}');
      case 'huge':
        // 200 MB with no length announced: only counting while reading can stop it.
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"jobs":[');
        return stream(res, mode, 200 * 1024 * 1024);
      case 'huge-announced':
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(200 * 1024 * 1024) });
        return stream(res, mode, 200 * 1024 * 1024);
      case 'stale':
        // A keep-alive connection that was closed while it sat in the pool: a request on it dies at once.
        if ((req.socket as { served?: number }).served) return void req.socket.destroy();
        return send(200, '{"jobs":[]}');
      case 'held-cut':
        // An idle-cutting middlebox: the poll is held, then the connection drops.
        setTimeout(() => res.socket?.destroy(), 2500);
        return;
      case 'cut':
        // Headers and half a body, then the connection drops.
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
        res.write('{"jobs":');
        setTimeout(() => res.socket?.destroy(), 20);
        return;
      case 'big': {
        // A large answer in many chunks, with multi-byte characters that fall across chunk edges.
        const jobs = Array.from({ length: 2000 }, (_, i) => ({ id: `j${i}`, type: 'ping', resource: null, payload: { note: 'é€😀'.repeat(i % 7) }, attempt: 1, leaseToken: `token-${i}-0123456789abcdef`, leaseTtlMs: 30_000, timeoutMs: 60_000 }));
        return send(200, JSON.stringify({ jobs }));
      }
      default:
        return send(404, '{}');
    }
  });
}

let http: Server;
let https: Server;
let pki: TestPki;
const pkiDirs: string[] = [];
const url = (s: Server, scheme: string) => `${scheme}://127.0.0.1:${(s.address() as AddressInfo).port}`;

beforeAll(async () => {
  pki = makeTestPki();
  pkiDirs.push(pki.dir);
  http = createHttp(handler);
  https = createHttps({ cert: pki.cert, key: pki.key }, handler);
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => https.listen(0, '127.0.0.1', r));
});
afterAll(async () => {
  http.closeAllConnections();
  https.closeAllConnections();
  await new Promise((r) => http.close(r));
  await new Promise((r) => https.close(r));
  for (const d of pkiDirs) rmSync(d, { recursive: true, force: true });
});

async function failure(p: Promise<unknown>): Promise<OutpostError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(OutpostError);
    expect((err as Error).message).not.toContain(TOKEN);
    return err as OutpostError;
  }
  throw new Error('expected a failure');
}

describe('ProxyApi over real HTTP', () => {
  const transport = new HttpTransport({ env: {} });
  afterAll(() => transport.destroy());
  const api = (base: string, token = TOKEN, t = transport) => new ProxyApi(t, { baseUrl: base, token, callTimeoutMs: 500, leaseTimeoutSlackMs: 500 });

  it('returns a validated answer and reports contact', async () => {
    let contacts = 0;
    const a = new ProxyApi(transport, { baseUrl: url(http, 'http'), token: TOKEN, onContact: () => contacts++ });
    await expect(a.lease({ ...lease, agentId: 'ok' })).resolves.toEqual({ jobs: [] });
    expect(contacts).toBe(1);
    expect(a.requestCounts['/agent/lease']).toBe(1);
    // Named in forward-proxy and proxy access logs.
    expect(lastUserAgent).toMatch(/^outpost-agent\/\d+\.\d+\.\d+/);
  });

  it('maps statuses to codes, retryable and Retry-After', async () => {
    const a = api(url(http, 'http'));
    expect(await failure(api(url(http, 'http'), 'wrong-token-xyz').lease({ ...lease, agentId: 'ok' }))).toMatchObject({ code: 'unauthorized', retryable: false });
    expect(await failure(a.lease({ ...lease, agentId: 'busy' }))).toMatchObject({ code: 'unavailable', retryable: true, retryAfterMs: 3000 });
    expect(await failure(a.lease({ ...lease, agentId: 'slow-down' }))).toMatchObject({ code: 'rate_limited', retryable: true, retryAfterMs: 2000 });
    expect(await failure(a.lease({ ...lease, agentId: 'bad' }))).toMatchObject({ code: 'invalid_request', retryable: false });
    const html = await failure(a.lease({ ...lease, agentId: 'html' }));
    expect(html).toMatchObject({ code: 'unavailable', retryable: true });
    const bad = await failure(a.lease({ ...lease, agentId: 'malformed' }));
    expect(bad.code).toBe('internal');
    expect(bad.message).toContain('malformed');
  });

  it('maps a refused connection and a timeout to retryable unavailable', async () => {
    const port = await freePort();
    expect(await failure(api(`http://127.0.0.1:${port}`).heartbeat({ agentId: 'ok', leases: [] }))).toMatchObject({ code: 'unavailable', retryable: true });
    const hang = await failure(api(url(http, 'http')).heartbeat({ agentId: 'hang', leases: [] }));
    expect(hang).toMatchObject({ code: 'unavailable', retryable: true });
    expect(hang.message).toContain('in time');
  });

  it('reads a large answer whole, and maps a connection cut mid-answer to retryable unavailable', async () => {
    const big = await api(url(http, 'http')).lease({ ...lease, agentId: 'big', max: 1000 });
    expect(big.jobs).toHaveLength(2000);
    expect(big.jobs[6]!.payload).toEqual({ note: 'é€😀'.repeat(6) });
    const cut = await failure(api(url(http, 'http')).lease({ ...lease, agentId: 'cut' }));
    expect(cut).toMatchObject({ code: 'unavailable', retryable: true });
  });

  it('rejects with the abort reason when the signal aborts', async () => {
    const c = new AbortController();
    const p = api(url(http, 'http')).lease({ ...lease, agentId: 'hang', waitMs: 5000 }, c.signal);
    c.abort(new OutpostError('aborted', 'stopping'));
    await expect(p).rejects.toMatchObject({ code: 'aborted', message: 'stopping' });
  });

  it('fails TLS with an unknown CA as tls_error, and trusts proxy.caFile', async () => {
    const e = await failure(api(url(https, 'https')).lease({ ...lease, agentId: 'ok' }));
    expect(e).toMatchObject({ code: 'tls_error' });
    const trusting = new HttpTransport({ caFile: pki.caCertFile, env: {} });
    await expect(api(url(https, 'https'), TOKEN, trusting).lease({ ...lease, agentId: 'ok' })).resolves.toEqual({ jobs: [] });
    trusting.destroy();
    const insecure = new HttpTransport({ insecureSkipTlsVerify: true, env: {} });
    await expect(api(url(https, 'https'), TOKEN, insecure).lease({ ...lease, agentId: 'ok' })).resolves.toEqual({ jobs: [] });
    insecure.destroy();
  });

  it('trusts NODE_EXTRA_CA_CERTS next to proxy.caFile', async () => {
    const other = makeTestPki();
    pkiDirs.push(other.dir);
    const t = new HttpTransport({ caFile: other.caCertFile, env: { NODE_EXTRA_CA_CERTS: pki.caCertFile } });
    await expect(api(url(https, 'https'), TOKEN, t).lease({ ...lease, agentId: 'ok' })).resolves.toEqual({ jobs: [] });
    t.destroy();
  });

  it('clamps a Retry-After of a month (seconds or date) to 5 minutes', async () => {
    const a = api(url(http, 'http'));
    expect(await failure(a.lease({ ...lease, agentId: 'month' }))).toMatchObject({ code: 'unavailable', retryable: true, retryAfterMs: 300_000 });
    expect(await failure(a.lease({ ...lease, agentId: 'month-date' }))).toMatchObject({ code: 'rate_limited', retryAfterMs: 300_000 });
  });

  it('clamps a renewed lease TTL of 9e9 ms to 10 minutes', async () => {
    const res = await api(url(http, 'http')).heartbeat({ agentId: 'ttl', leases: [] });
    expect(res.leases).toEqual([
      { jobId: 'j1', status: 'ok', leaseTtlMs: 600_000 },
      { jobId: 'j2', status: 'ok', leaseTtlMs: 5000 },
    ]);
  });

  it('refuses a 200 MB answer clearly after reading at most 16 MiB of it, with memory bounded', async () => {
    const rssBefore = process.memoryUsage().rss;
    const e = await failure(new ProxyApi(transport, { baseUrl: url(http, 'http'), token: TOKEN, leaseTimeoutSlackMs: 60_000 }).lease({ ...lease, agentId: 'huge' }));
    expect(e).toMatchObject({ code: 'too_large', retryable: false });
    expect(e.message).toBe("the integration-proxy's answer to /agent/lease is larger than 16 MiB; refused without reading it");
    // The client hung up: the server got rid of 16 MiB plus what the sockets buffer, not 200 MB.
    expect(written.huge!).toBeLessThan(MAX_ANSWER_BYTES + 16 * 1024 * 1024);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(150 * 1024 * 1024);
    // An announced length over the limit is refused before the body is read.
    const announced = await failure(api(url(http, 'http')).lease({ ...lease, agentId: 'huge-announced' }));
    expect(announced).toMatchObject({ code: 'too_large', retryable: false });
    // A smaller cap applies to every call.
    const small = new ProxyApi(transport, { baseUrl: url(http, 'http'), token: TOKEN, maxAnswerBytes: 4096 });
    expect(await failure(small.lease({ ...lease, agentId: 'big', max: 1000 }))).toMatchObject({ code: 'too_large' });
    expect((await failure(small.lease({ ...lease, agentId: 'big', max: 1000 }))).message).toContain('larger than 4096 bytes');
  });

  it('tells a connection cut under a held call from other failures', async () => {
    const cut = await failure(new ProxyApi(transport, { baseUrl: url(http, 'http'), token: TOKEN, leaseTimeoutSlackMs: 10_000 }).lease({ ...lease, agentId: 'held-cut', waitMs: 5000 }));
    expect(cut).toMatchObject({ code: 'unavailable', retryable: true });
    expect(isConnectionCut(cut)).toBe(true);
    const refused = await failure(api(`http://127.0.0.1:${await freePort()}`).lease({ ...lease, agentId: 'ok' }));
    expect(isConnectionCut(refused)).toBe(false);
    const timedOut = await failure(api(url(http, 'http')).heartbeat({ agentId: 'hang', leases: [] }));
    expect(isConnectionCut(timedOut)).toBe(false);
    expect(isConnectionCut(await failure(api(url(http, 'http')).lease({ ...lease, agentId: 'busy' })))).toBe(false);
  });

  it('sends again at once when a pooled connection turns out closed (stale keep-alive), and only then', async () => {
    const t = new HttpTransport({ env: {} });
    const a = new ProxyApi(t, { baseUrl: url(http, 'http'), token: TOKEN });
    await expect(a.lease({ ...lease, agentId: 'ok' })).resolves.toEqual({ jobs: [] });
    // The next call goes out on the pooled socket, which the server now drops unanswered.
    await expect(a.lease({ ...lease, agentId: 'stale' })).resolves.toEqual({ jobs: [] });
    expect(a.requestCounts['/agent/lease']).toBe(2);
    t.destroy();
  });

  it('parses Retry-After in seconds and as a date', () => {
    expect(parseRetryAfterMs('5')).toBe(5000);
    expect(parseRetryAfterMs(new Date(10_000).toUTCString(), 4000)).toBe(6000);
    expect(parseRetryAfterMs('soon')).toBeUndefined();
    expect(parseRetryAfterMs('3000000')).toBe(300_000);
    expect(parseRetryAfterMs('9'.repeat(400))).toBe(300_000);
    expect(parseRetryAfterMs(new Date(0).toUTCString(), 4000)).toBe(0);
    expect(parseRetryAfterMs(undefined)).toBeUndefined();
  });
});
