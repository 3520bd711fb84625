import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Agent, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { post, TimeoutError, type PostRequest } from '../../lib/agent/http-post.js';

/**
 * lib/agent/http-post.ts (the agent's one HTTP call, on Node's client) against a
 * real loopback server: what each answer the protocol client must survive
 * turns into (an answer, a size refusal, a timeout, a cut, the signal's reason).
 */
let server: Server;
let base: string;
const agent = new Agent({ keepAlive: true });
const seenBodies: string[] = [];

const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => void> = {
  '/echo': (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seenBodies.push(Buffer.concat(chunks).toString('utf8'));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, headers: req.headers }));
    });
  },
  '/gzip': (_req, res) => void res.writeHead(200, { 'content-encoding': 'gzip' }).end(gzipSync(JSON.stringify({ zipped: 'é'.repeat(1000) }))),
  // 1 MB of zeros that inflate past the limit: refused while decompressing, not after.
  '/bomb': (_req, res) => void res.writeHead(200, { 'content-encoding': 'gzip' }).end(gzipSync(Buffer.alloc(8 * 1024 * 1024, 0x20))),
  '/declared': (_req, res) => {
    res.writeHead(200, { 'content-length': String(64 * 1024 * 1024) });
    res.write('{');
  },
  '/endless': (_req, res) => {
    res.writeHead(200);
    const t = setInterval(() => res.write('x'.repeat(64 * 1024)), 1);
    res.on('close', () => clearInterval(t));
  },
  '/silent': () => undefined,
  '/cut': (_req, res) => {
    res.writeHead(200, { 'content-length': '100' });
    res.write('{"partial":');
    setTimeout(() => res.socket?.destroy(), 20);
  },
};

beforeAll(async () => {
  server = createServer((req, res) => routes[req.url ?? '']?.(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  agent.destroy();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const call = (path: string, over: Partial<PostRequest> = {}) =>
  post({ url: `${base}${path}`, body: '{"a":1}', headers: { 'content-type': 'application/json' }, timeoutMs: 5000, maxAnswerBytes: 1024 * 1024, agent, ...over });

describe('post (the agent HTTP call)', () => {
  it('sends the body with its length and reads the answer; the next call reuses the connection', async () => {
    const first = call('/echo', { body: Buffer.from('{"é":1}'), headers: { authorization: 'Bearer t', 'content-type': 'application/x-ndjson' } });
    const a = await first.answer;
    expect(a.statusCode).toBe(200);
    const headers = (JSON.parse(a.body) as { headers: Record<string, string> }).headers;
    expect(headers).toMatchObject({ authorization: 'Bearer t', 'content-type': 'application/x-ndjson', 'content-length': String(Buffer.byteLength('{"é":1}')), 'accept-encoding': 'identity' });
    expect(seenBodies.at(-1)).toBe('{"é":1}');
    expect(first.reusedSocket()).toBe(false);
    const second = call('/echo');
    await second.answer;
    expect(second.reusedSocket()).toBe(true);
  });

  it('decompresses a gzip answer', async () => {
    expect(JSON.parse((await call('/gzip').answer).body)).toEqual({ zipped: 'é'.repeat(1000) });
  });

  it('refuses an answer over the limit: declared, streamed without end, or inflated', async () => {
    for (const path of ['/declared', '/endless', '/bomb']) {
      const c = call(path);
      await expect(c.answer).rejects.toThrow(/answer/);
      expect({ path, tooLarge: c.tooLarge() }).toEqual({ path, tooLarge: true });
    }
  });

  it('times out a silent server with a TimeoutError (ETIMEDOUT)', async () => {
    const c = call('/silent', { timeoutMs: 200 });
    await expect(c.answer).rejects.toBeInstanceOf(TimeoutError);
    await expect(c.answer).rejects.toMatchObject({ code: 'ETIMEDOUT', name: 'TimeoutError' });
  });

  it('reports a connection cut in the middle of the answer as ECONNRESET', async () => {
    await expect(call('/cut').answer).rejects.toMatchObject({ code: 'ECONNRESET' });
  });

  it('ends with the signal’s reason when aborted, before or during the call', async () => {
    const before = AbortSignal.abort(new Error('stopped before'));
    await expect(call('/echo', { signal: before }).answer).rejects.toThrow('stopped before');
    const ac = new AbortController();
    const c = call('/silent', { signal: ac.signal });
    setTimeout(() => ac.abort(new Error('stopped during')), 50);
    await expect(c.answer).rejects.toThrow('stopped during');
  });

  it('fails a header Node refuses at once, without a socket', async () => {
    await expect(call('/echo', { headers: { authorization: 'Bearer a\nb' } }).answer).rejects.toMatchObject({ code: 'ERR_INVALID_CHAR' });
  });
});
