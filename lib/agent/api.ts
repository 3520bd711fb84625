import { performance } from 'node:perf_hooks';
import type { TSchema, Static } from '@sinclair/typebox';
import {
  GoodbyeResponse,
  HeartbeatResponse,
  LeaseResponse,
  OutputResponse,
  ReleaseResponse,
  ResultsResponse,
  type GoodbyeRequest,
  type HeartbeatRequest,
  type LeaseRequest,
  type OutputRequest,
  type ReleaseRequest,
  type ResultsRequest,
} from '../protocol/schemas.js';
import { codeForHttpStatus, isRetryableHttpStatus } from '../protocol/errors.js';
import { isValid } from '../protocol/validate.js';
import { API_PREFIX } from '../protocol/version.js';
import { OutpostError } from '../util/errors.js';
import { abortReason } from '../util/abort.js';
import { MAX_RETRY_AFTER_MS } from '../util/backoff.js';
import { boundHeartbeat, MAX_ANSWER_BYTES } from './answers.js';
import type { HttpTransport } from './http.js';
import { post, type PostCall } from './http-post.js';
import { AGENT_VERSION } from './version.js';

/** Options of the protocol client. */
export interface ProxyApiOptions {
  /** integration-proxy base URL. */
  baseUrl: string;
  /** The pool's agent token (sent as `Authorization: Bearer`). */
  token: string;
  /** Timeout of every call but `lease`. Default 10 000 ms. */
  callTimeoutMs?: number;
  /** Added to the lease's `waitMs` for its timeout, so the hold ends on the server's side first. Default 10 000 ms. */
  leaseTimeoutSlackMs?: number;
  /** Called after every 2xx answer (readiness: "has talked to the proxy"). */
  onContact?: () => void;
  /** Largest answer body read, counted as it streams in (decompressed); a larger one fails the call with `too_large`. Default 16 MiB. */
  maxAnswerBytes?: number;
}

/**
 * The agent's side of wire protocol v1. One POST per call, no retries here
 * (the caller owns backoff), every failure an OutpostError: proxy 407 →
 * `proxy_error`, TLS → `tls_error`, refused/reset/timeout → `unavailable`
 * (retryable), HTTP errors by status, a malformed answer → `internal`, an
 * answer over `maxAnswerBytes` → `too_large` (read no further than that).
 */
export class ProxyApi {
  /** Requests sent per path, for tests and the benchmark. */
  readonly requestCounts: Record<string, number> = {};
  private readonly base: string;
  private readonly callTimeoutMs: number;
  private readonly leaseSlackMs: number;
  private readonly maxAnswerBytes: number;

  constructor(
    private readonly transport: HttpTransport,
    private readonly opts: ProxyApiOptions,
  ) {
    this.base = opts.baseUrl.replace(/\/+$/, '');
    this.callTimeoutMs = opts.callTimeoutMs ?? 10_000;
    this.leaseSlackMs = opts.leaseTimeoutSlackMs ?? 10_000;
    this.maxAnswerBytes = opts.maxAnswerBytes ?? MAX_ANSWER_BYTES;
  }

  lease(body: LeaseRequest, signal?: AbortSignal): Promise<LeaseResponse> {
    return this.post('/agent/lease', body, LeaseResponse, body.waitMs + this.leaseSlackMs, signal);
  }

  heartbeat(body: HeartbeatRequest, signal?: AbortSignal): Promise<HeartbeatResponse> {
    return this.post('/agent/heartbeat', body, HeartbeatResponse, this.callTimeoutMs, signal).then(boundHeartbeat);
  }

  results(body: ResultsRequest, signal?: AbortSignal): Promise<ResultsResponse> {
    return this.post('/agent/results', body, ResultsResponse, this.callTimeoutMs, signal);
  }

  release(body: ReleaseRequest, signal?: AbortSignal): Promise<ReleaseResponse> {
    return this.post('/agent/release', body, ReleaseResponse, this.callTimeoutMs, signal);
  }

  /** Tells the proxy this agent is draining or gone (presence); `timeoutMs` bounds it (a stopping agent does not wait long). */
  goodbye(body: GoodbyeRequest, timeoutMs: number, signal?: AbortSignal): Promise<GoodbyeResponse> {
    return this.post('/agent/goodbye', body, GoodbyeResponse, Math.min(timeoutMs, this.callTimeoutMs), signal);
  }

  output(jobId: string, body: OutputRequest, signal?: AbortSignal): Promise<OutputResponse> {
    return this.post(`/agent/jobs/${encodeURIComponent(jobId)}/output`, body, OutputResponse, this.callTimeoutMs, signal);
  }

  /** One output page in its NDJSON form, encoded (and maybe gzip-compressed) by lib/agent/output-pipe.ts with its content headers. */
  outputNdjson(jobId: string, page: EncodedBody, signal?: AbortSignal): Promise<OutputResponse> {
    return this.post(`/agent/jobs/${encodeURIComponent(jobId)}/output`, page, OutputResponse, this.callTimeoutMs, signal);
  }

  private async post<S extends TSchema>(path: string, body: unknown, schema: S, timeoutMs: number, signal?: AbortSignal): Promise<Static<S>> {
    if (signal?.aborted) throw abortReason(signal);
    const url = `${this.base}${API_PREFIX}${path}`;
    const key = path.startsWith('/agent/jobs/') ? '/agent/jobs/:id/output' : path;
    this.requestCounts[key] = (this.requestCounts[key] ?? 0) + 1;
    // Encoded once: a stale keep-alive socket makes the same request go out again.
    const request = this.encode(body);
    let res;
    for (let attempt = 0; ; attempt++) {
      const sentAtMs = performance.now();
      const sent = this.send(url, request, timeoutMs, signal);
      try {
        res = await sent.answer;
        break;
      } catch (err) {
        if (signal?.aborted) throw abortReason(signal);
        if (sent.tooLarge()) {
          const limit = this.maxAnswerBytes % 1048576 === 0 ? `${this.maxAnswerBytes / 1048576} MiB` : `${this.maxAnswerBytes} bytes`;
          throw new OutpostError('too_large', `the integration-proxy's answer to ${path} is larger than ${limit}; refused without reading it`, { cause: err });
        }
        // A pooled keep-alive connection that something on the path closed while it sat idle (squid
        // cuts every idle tunnel in the same sweep) fails at once: the request never reached the
        // proxy. Send it again at once; each retry uses up one stale socket, so a fresh connection
        // comes at the latest after the pool's free sockets. A call cut after a hold is not this:
        // it goes to the caller (the lease loop tells an idle cut from a failure).
        const stale = sent.reusedSocket() && isCutCause(err) && !(err as { response?: unknown }).response && performance.now() - sentAtMs < STALE_FAIL_MS;
        if (stale && attempt < STALE_SOCKET_RETRIES) continue;
        const mapped = mapTransportError(err);
        const route = mapped.code === 'proxy_error' ? '' : this.transport.routeLabel(url);
        if (!route) throw mapped;
        throw new OutpostError(mapped.code, `${mapped.message}${route}`, { retryable: mapped.retryable, cause: err });
      }
    }
    const parsed = parseJson(res.body);
    if (res.statusCode >= 200 && res.statusCode < 300) {
      if (!isValid(schema, parsed)) {
        throw new OutpostError('internal', `the integration-proxy sent a malformed answer to ${path} (status ${res.statusCode})`, { retryable: true });
      }
      this.opts.onContact?.();
      return parsed;
    }
    throw httpError(path, res.statusCode, parsed, res.headers['retry-after']);
  }

  /** The body's bytes and headers: an EncodedBody as it is, anything else as JSON. */
  private encode(body: unknown): { data: string | Buffer; headers: Record<string, string> } {
    // The User-Agent names the agent and its version in forward-proxy and proxy access logs.
    const common = { authorization: `Bearer ${this.opts.token}`, 'user-agent': USER_AGENT };
    if (body instanceof EncodedBody) return { data: body.data, headers: { ...common, ...body.headers } };
    return { data: JSON.stringify(body), headers: { ...common, 'content-type': 'application/json' } };
  }

  /**
   * One POST: the answer (a text body), whether it was cut off for being over
   * maxAnswerBytes, and whether it went out on a reused keep-alive socket.
   */
  private send(url: string, request: { data: string | Buffer; headers: Record<string, string> }, timeoutMs: number, signal?: AbortSignal): PostCall {
    return post({
      url,
      body: request.data,
      headers: request.headers,
      timeoutMs,
      maxAnswerBytes: this.maxAnswerBytes,
      agent: this.transport.agentFor(url),
      ...(signal ? { signal } : {}),
    });
  }
}

/** A request body already encoded (not JSON-serialised here): its bytes and their content headers. */
export class EncodedBody {
  constructor(
    readonly data: string | Buffer,
    readonly headers: Readonly<Record<string, string>>,
  ) {}
}

const USER_AGENT = `outpost-agent/${AGENT_VERSION}`;

/** At most this many immediate re-sends of a request whose pooled connection turned out to be closed. */
const STALE_SOCKET_RETRIES = 17;
/** A reused connection that fails faster than this was dead before the request (below PollPolicy's 2 s cut hold). */
const STALE_FAIL_MS = 1000;

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * Retry-After in seconds or as an HTTP date, clamped to [0, MAX_RETRY_AFTER_MS]
 * (a month would overflow Node's 32-bit timers into a 1 ms hot loop);
 * undefined when absent or unreadable.
 */
export function parseRetryAfterMs(value: string | string[] | undefined, nowMs = Date.now()): number | undefined {
  const v = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!v) return undefined;
  let ms: number;
  if (/^\d+(\.\d+)?$/.test(v)) ms = Math.round(Number(v) * 1000);
  else {
    const at = Date.parse(v);
    if (Number.isNaN(at)) return undefined;
    ms = at - nowMs;
  }
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, ms));
}

/** Socket-level codes of a connection closed under a request (a reset, or EOF before the answer ended). */
const CUT_CODES = new Set(['ECONNRESET', 'EPIPE', 'ERR_STREAM_PREMATURE_CLOSE']);

/** True for a socket error of a connection closed under the request (reset or EOF), not a timeout. */
function isCutCause(cause: unknown): boolean {
  const c = cause as { code?: string; message?: string; name?: string } | undefined;
  if (!c || c.name === 'TimeoutError') return false;
  return CUT_CODES.has(c.code ?? '') || c.message === 'socket hang up';
}

/**
 * True when a call failed because the connection was cut under it (reset or
 * EOF), as an idle-cutting forward proxy or firewall does to a held long poll;
 * not for a refused connection, a timeout, TLS or an HTTP status.
 */
export function isConnectionCut(err: unknown): boolean {
  return err instanceof OutpostError && err.code === 'unavailable' && isCutCause(err.cause);
}

function httpError(path: string, status: number, body: unknown, retryAfter: string | string[] | undefined): OutpostError {
  const wire = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  const code = codeForHttpStatus(status);
  const detail = typeof wire?.message === 'string' ? `: ${wire.message.slice(0, 500)}` : '';
  const retryAfterMs = parseRetryAfterMs(retryAfter);
  if (status === 401) {
    return new OutpostError('unauthorized', `the integration-proxy rejected the agent token (401) on ${path}${detail}`);
  }
  if (status === 407) {
    return new OutpostError('proxy_error', 'the forward proxy rejected the credentials (407)', { retryable: true });
  }
  return new OutpostError(code, `the integration-proxy answered ${status} on ${path}${detail}`, {
    retryable: isRetryableHttpStatus(status),
    ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
  });
}

const TLS_CODES = /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ALTNAME|HOSTNAME_MISMATCH|EPROTO/;
const NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNABORTED']);

/** Maps a transport (socket, TLS, forward proxy, timeout) error to an OutpostError; the raw error stays as `cause` for logs. */
export function mapTransportError(err: unknown): OutpostError {
  if (err instanceof OutpostError) return err;
  const e = err as { code?: string; message?: string; name?: string };
  const code = e.code ?? '';
  const message = e.message ?? String(err);
  const proxyStatus = /Bad response: (\d{3})/.exec(message);
  if (proxyStatus) {
    const status = Number(proxyStatus[1]);
    // 407 is the standard answer; some proxies (tinyproxy) answer a CONNECT with wrong credentials with 401.
    const text = status === 407 || status === 401 ? `the forward proxy rejected the credentials (${status})` : `the forward proxy refused the tunnel (${status})`;
    return new OutpostError('proxy_error', text, { retryable: true, cause: err });
  }
  if (message === 'Proxy timeout') {
    return new OutpostError('proxy_error', 'the forward proxy did not answer in time', { retryable: true, cause: err });
  }
  if (TLS_CODES.test(code) || /certificate|SSL routines|TLS/i.test(message)) {
    return new OutpostError('tls_error', `TLS handshake with the integration-proxy failed${code ? `: ${code}` : ''}`, { retryable: true, cause: err });
  }
  if (e.name === 'TimeoutError' || code === 'ETIMEDOUT') {
    return new OutpostError('unavailable', 'the integration-proxy did not answer in time', { retryable: true, cause: err });
  }
  if (NET_CODES.has(code)) {
    return new OutpostError('unavailable', `the integration-proxy is unreachable (${code})`, { retryable: true, cause: err });
  }
  // The text of an unknown transport error is not echoed (it may quote a proxy URL with its credentials); the cause is logged, redacted.
  return new OutpostError('unavailable', `request to the integration-proxy failed${code ? ` (${code})` : ''}`, { retryable: true, cause: err });
}
