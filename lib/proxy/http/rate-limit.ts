import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import rateLimit from '@fastify/rate-limit';
import { OutpostError } from '../../util/errors.js';

/** Options of the per-token request rate (config `quotas.requestsPerToken` / `quotas.requestWindowMs`). */
export interface RateLimitOptions {
  /** Requests one token may make per window. Default (config) 3 000. */
  max: number;
  /** The window. Default (config) 1 000 ms. */
  timeWindowMs: number;
}

/**
 * The key of a request: the sha256 of its bearer token (never the token),
 * so every agent of a pool, sharing its token, shares one budget.
 */
function tokenKey(req: FastifyRequest): string {
  const header = req.headers.authorization;
  if (typeof header !== 'string') return 'anonymous';
  let key = keys.get(header);
  if (key === undefined) {
    // Agents reuse a few tokens: one sha256 per token, not per request.
    if (keys.size >= MAX_REMEMBERED_KEYS) keys.clear();
    keys.set(header, (key = createHash('sha256').update(header).digest('base64url')));
  }
  return key;
}
const keys = new Map<string, string>();
const MAX_REMEMBERED_KEYS = 1024;

/**
 * Per-token request rate with @fastify/rate-limit (its in-memory store: per
 * replica). It runs at `preParsing`: after the onRequest hook has
 * authenticated the request (an unauthenticated one never gets here, nor
 * spends a token's budget), before the body is read or parsed, so a
 * throttled token costs no parsing. Only `/v1/` routes are counted: health,
 * readiness and metrics are never throttled. The refusal is the protocol's
 * 429 `rate_limited` with Retry-After (the error handler writes it).
 * Must be awaited before the routes are registered (it hooks each route).
 */
export async function registerRateLimit(app: FastifyInstance, opts: RateLimitOptions, deps: { onExceeded(): void }): Promise<void> {
  await app.register(rateLimit, {
    global: true,
    hook: 'preParsing',
    max: opts.max,
    timeWindow: opts.timeWindowMs,
    keyGenerator: tokenKey,
    allowList: (req) => !(req.routeOptions.url ?? '').startsWith('/v1/'),
    onExceeded: () => deps.onExceeded(),
    errorResponseBuilder: (_req, ctx) =>
      new OutpostError('rate_limited', `more than ${ctx.max} requests per ${opts.timeWindowMs} ms with this token (quotas.requestsPerToken)`, {
        retryAfterMs: Math.max(1000, ctx.ttl),
      }),
    addHeadersOnExceeding: { 'x-ratelimit-limit': false, 'x-ratelimit-remaining': false, 'x-ratelimit-reset': false },
    addHeaders: { 'x-ratelimit-limit': true, 'x-ratelimit-remaining': true, 'x-ratelimit-reset': true, 'retry-after': true },
  });
}
