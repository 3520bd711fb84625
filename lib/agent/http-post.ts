import { request as httpRequest, type Agent as HttpAgent, type ClientRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest, type Agent as HttpsAgent } from 'node:https';
import type { Readable } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { abortReason } from '../util/abort.js';

/** One POST of the protocol client (lib/agent/api.ts). */
export interface PostRequest {
  url: string;
  body: string | Buffer;
  headers: Readonly<Record<string, string>>;
  /** The whole exchange, from the request's start to the answer's last byte. */
  timeoutMs: number;
  /** Largest answer body read (after decompression); a larger one ends the call with `tooLarge()` true. */
  maxAnswerBytes: number;
  /** The keep-alive agent (direct or through the forward proxy, lib/agent/http.ts). */
  agent: HttpAgent | HttpsAgent;
  signal?: AbortSignal;
}

export interface PostAnswer {
  statusCode: number;
  headers: IncomingHttpHeaders;
  /** The body as text (UTF-8). */
  body: string;
}

/** The call in flight: its answer, and what is known about how it went once it settled. */
export interface PostCall {
  answer: Promise<PostAnswer>;
  /** True when the answer was refused for being over maxAnswerBytes (then `answer` rejects). */
  tooLarge(): boolean;
  /** True when the request went out on a pooled keep-alive connection (a stale one fails at once). */
  reusedSocket(): boolean;
}

/** The timeout's error: named as callers test it (`name === 'TimeoutError'`, code ETIMEDOUT). */
export class TimeoutError extends Error {
  override readonly name = 'TimeoutError';
  readonly code = 'ETIMEDOUT';
}

/**
 * One HTTP(S) POST on Node's own client, with what the agent needs and
 * nothing else (got loaded ~12 MB of code for the same: README, benchmarks):
 * an overall timeout, an AbortSignal, the answer read up to a byte limit
 * (a Content-Length over it refused before any byte), gzip/deflate/br
 * answers decompressed under the same limit. Errors are the socket's own
 * (ECONNRESET, ECONNREFUSED, TLS codes, the forward proxy's "Bad response:
 * 407"), a TimeoutError, or the signal's reason; lib/agent/api.ts maps them.
 */
export function post(r: PostRequest): PostCall {
  let tooLarge = false;
  let req: ClientRequest | undefined;
  const answer = new Promise<PostAnswer>((resolve, reject) => {
    if (r.signal?.aborted) {
      reject(abortReason(r.signal));
      return;
    }
    const body = typeof r.body === 'string' ? Buffer.from(r.body) : r.body;
    const send = r.url.startsWith('https:') ? httpsRequest : httpRequest;
    let settled = false;
    const { signal } = r;
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      return true;
    };
    const fail = (err: Error): void => {
      if (!settle()) return;
      req?.destroy();
      reject(err);
    };
    const onAbort = (): void => {
      if (signal) fail(abortReason(signal));
    };
    const timer = setTimeout(() => fail(new TimeoutError(`no complete answer within ${r.timeoutMs} ms`)), r.timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      req = send(r.url, {
        method: 'POST',
        agent: r.agent,
        headers: { accept: 'application/json', 'accept-encoding': 'identity', 'content-length': String(body.length), ...r.headers },
      });
    } catch (err) {
      // A header Node refuses (a token with a newline): thrown at once, before any socket.
      fail(asError(err));
      return;
    }
    // `on`, not `once`: destroying a request before its answer emits another 'error' ("socket hang up").
    req.on('error', fail);
    req.once('response', (res: IncomingMessage) => {
      const declared = Number(res.headers['content-length'] ?? 0);
      if (declared > r.maxAnswerBytes) {
        tooLarge = true;
        fail(new TooLargeError(`an answer of ${declared} bytes`));
        return;
      }
      readBody(res, r.maxAnswerBytes).then(
        (text) => {
          if (settle()) resolve({ statusCode: res.statusCode ?? 0, headers: res.headers, body: text });
        },
        (err: unknown) => {
          if (err instanceof TooLargeError) tooLarge = true;
          fail(asError(err));
        },
      );
    });
    req.end(body);
  });
  return { answer, tooLarge: () => tooLarge, reusedSocket: () => req?.reusedSocket === true };
}

class TooLargeError extends Error {}

/** What was thrown, as an Error with its code kept (errors from Node's internals may come from another realm under test runners, so no instanceof). */
function asError(err: unknown): Error {
  return typeof err === 'object' && err !== null && 'message' in err ? (err as Error) : new Error(String(err));
}

/** The answer's text, decompressed as its Content-Encoding says, refused past `maxBytes`. */
function readBody(res: IncomingMessage, maxBytes: number): Promise<string> {
  const encoding = (res.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  let stream: Readable = res;
  if (encoding === 'gzip' || encoding === 'x-gzip') stream = res.pipe(createGunzip());
  else if (encoding === 'deflate') stream = res.pipe(createInflate());
  else if (encoding === 'br') stream = res.pipe(createBrotliDecompress());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    let failed = false;
    const fail = (err: Error): void => {
      if (failed) return;
      failed = true;
      res.destroy();
      if (stream !== res) stream.destroy();
      reject(err);
    };
    // A connection closed before the answer's end is a cut (ECONNRESET), as for the request itself.
    res.once('close', () => {
      if (!res.complete) fail(Object.assign(new Error('the connection closed before the answer ended'), { code: 'ECONNRESET' }));
    });
    res.on('error', fail);
    if (stream !== res) stream.on('error', fail);
    stream.on('data', (c: Buffer) => {
      bytes += c.length;
      if (bytes > maxBytes) fail(new TooLargeError(`an answer over ${maxBytes} bytes`));
      else chunks.push(c);
    });
    stream.once('end', () => resolve(Buffer.concat(chunks, bytes).toString('utf8')));
  });
}
