import type { TSchema, Static } from '@sinclair/typebox';
import {
  HeartbeatResponse,
  LeaseResponse,
  OutputResponse,
  ReleaseResponse,
  ResultsResponse,
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
import type { HttpTransport } from './http.js';

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
}

/**
 * The agent's side of wire protocol v1. One POST per call, no retries here
 * (the caller owns backoff), every failure an OutpostError: proxy 407 →
 * `proxy_error`, TLS → `tls_error`, refused/reset/timeout → `unavailable`
 * (retryable), HTTP errors by status, a malformed answer → `internal`.
 */
export class ProxyApi {
  /** Requests sent per path, for tests and the benchmark. */
  readonly requestCounts: Record<string, number> = {};
  private readonly base: string;
  private readonly callTimeoutMs: number;
  private readonly leaseSlackMs: number;

  constructor(
    private readonly transport: HttpTransport,
    private readonly opts: ProxyApiOptions,
  ) {
    this.base = opts.baseUrl.replace(/\/+$/, '');
    this.callTimeoutMs = opts.callTimeoutMs ?? 10_000;
    this.leaseSlackMs = opts.leaseTimeoutSlackMs ?? 10_000;
  }

  lease(body: LeaseRequest, signal?: AbortSignal): Promise<LeaseResponse> {
    return this.post('/agent/lease', body, LeaseResponse, body.waitMs + this.leaseSlackMs, signal);
  }

  heartbeat(body: HeartbeatRequest, signal?: AbortSignal): Promise<HeartbeatResponse> {
    return this.post('/agent/heartbeat', body, HeartbeatResponse, this.callTimeoutMs, signal);
  }

  results(body: ResultsRequest, signal?: AbortSignal): Promise<ResultsResponse> {
    return this.post('/agent/results', body, ResultsResponse, this.callTimeoutMs, signal);
  }

  release(body: ReleaseRequest, signal?: AbortSignal): Promise<ReleaseResponse> {
    return this.post('/agent/release', body, ReleaseResponse, this.callTimeoutMs, signal);
  }

  output(jobId: string, body: OutputRequest, signal?: AbortSignal): Promise<OutputResponse> {
    return this.post(`/agent/jobs/${encodeURIComponent(jobId)}/output`, body, OutputResponse, this.callTimeoutMs, signal);
  }

  private async post<S extends TSchema>(path: string, body: unknown, schema: S, timeoutMs: number, signal?: AbortSignal): Promise<Static<S>> {
    if (signal?.aborted) throw abortReason(signal);
    const url = `${this.base}${API_PREFIX}${path}`;
    const key = path.startsWith('/agent/jobs/') ? '/agent/jobs/:id/output' : path;
    this.requestCounts[key] = (this.requestCounts[key] ?? 0) + 1;
    let res;
    try {
      res = await this.transport.got.post(url, {
        json: body,
        headers: { authorization: `Bearer ${this.opts.token}` },
        timeout: { request: timeoutMs },
        agent: this.transport.agentsFor(url),
        responseType: 'text',
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      if (signal?.aborted) throw abortReason(signal);
      const mapped = mapTransportError(err);
      const route = mapped.code === 'proxy_error' ? '' : this.transport.routeLabel(url);
      if (!route) throw mapped;
      throw new OutpostError(mapped.code, `${mapped.message}${route}`, { retryable: mapped.retryable, cause: err });
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
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Retry-After in seconds or as an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfterMs(value: string | string[] | undefined, nowMs = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  if (/^\d+(\.\d+)?$/.test(v.trim())) return Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
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
const NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNABORTED', 'ERR_GOT_REQUEST_ERROR']);

/** Maps a got/socket error to an OutpostError; the raw error stays as `cause` for logs. */
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
    return new OutpostError('tls_error', `TLS handshake with the integration-proxy failed: ${code || message}`, { retryable: true, cause: err });
  }
  if (e.name === 'TimeoutError' || code === 'ETIMEDOUT') {
    return new OutpostError('unavailable', 'the integration-proxy did not answer in time', { retryable: true, cause: err });
  }
  if (NET_CODES.has(code)) {
    return new OutpostError('unavailable', `the integration-proxy is unreachable (${code}: ${message})`, { retryable: true, cause: err });
  }
  return new OutpostError('unavailable', `request to the integration-proxy failed: ${code ? `${code}: ` : ''}${message}`, { retryable: true, cause: err });
}
