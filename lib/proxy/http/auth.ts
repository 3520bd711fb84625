import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { Clock } from '../../util/clock.js';
import { OutpostError } from '../../util/errors.js';
import type { Logger } from '../../log/index.js';
import { LogThrottle } from '../../log/throttle.js';
import type { Principal, TokenStore } from '../store/tokens.js';

/**
 * What a route needs, decided on the route the router matched (so on the
 * decoded, normalised path: `/%761/agent/lease` is `/v1/agent/lease`), never
 * on the raw URL.
 * - `public`: no token (health, readiness, the dashboard page, the OpenAPI document);
 * - `optional`: no token needed, a token shows more (`/metrics`);
 * - `agent`: an agent token (`/v1/agent/*`);
 * - `read`: an admin or viewer token (GET/HEAD elsewhere);
 * - `write`: an admin token (any other method elsewhere);
 * - `any`: any valid token (a path no route matches: 404 only to a known caller).
 */
export type Access = 'public' | 'optional' | 'agent' | 'read' | 'write' | 'any';

const PUBLIC_ROUTES: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/', '/openapi.json']);
const OPTIONAL_ROUTES: ReadonlySet<string> = new Set(['/metrics']);

/**
 * The access a request needs, from its matched route pattern (undefined when
 * no route matched) and method. Deny by default: a route is public only when
 * listed here, so a route added later needs a token without anyone thinking of it.
 */
export function accessOf(routeUrl: string | undefined, method: string): Access {
  if (routeUrl === undefined) return 'any';
  const reads = method === 'GET' || method === 'HEAD';
  if (reads && PUBLIC_ROUTES.has(routeUrl)) return 'public';
  if (reads && OPTIONAL_ROUTES.has(routeUrl)) return 'optional';
  if (routeUrl.startsWith('/v1/agent/')) return 'agent';
  return reads ? 'read' : 'write';
}

/** Tuning of the auth cache; the defaults are what the proxy runs with. */
export interface AuthOptions {
  /** The configured admin token (every pool), or null. */
  adminToken: string | null;
  /**
   * How often the store's revocation counter is read, on the first request
   * after the period (no timer): a token revoked by another process (the CLI
   * on SQLite) is refused within this plus one query. Default 500 ms.
   */
  revisionCheckMs?: number;
  /** A cached token is re-read from the store after this long (catches rows changed by hand). Default 60 000 ms. */
  cacheMaxAgeMs?: number;
  /** `last_used_at` is written at most this often per token. Default 60 000 ms. */
  lastUsedWriteMs?: number;
  /** At most one `authentication failed` line per reason and client address per this. Default 60 000 ms. */
  refusalLogPeriodMs?: number;
}

export interface AuthDeps {
  tokens: TokenStore;
  clock: Clock;
  log: Logger;
}

interface Entry {
  principal: Principal;
  expiresAtMs: number | null;
  /** Monotonic time of the store read. */
  loadedAtMs: number;
  /** The cache epoch when the read started: a revocation since makes it stale. */
  epoch: number;
  /** Wall time `last_used_at` was last written (or read). */
  lastUsedAtMs: number;
}

const principals = new WeakMap<FastifyRequest, Principal>();
/** Authorization header values remembered; beyond this the memo is emptied (agents reuse a few tokens). */
const MAX_REMEMBERED_HEADERS = 1024;
const ADMIN: Principal = Object.freeze({ pool: null, role: 'admin', tokenId: null });

/**
 * Resolves bearer tokens to principals and checks roles, once per request in
 * the onRequest hook, before the body is read. A header already accepted
 * costs one Map lookup; the cache is correct because every revocation moves
 * the store's revision counter (read at most every `revisionCheckMs`, and
 * NOTIFYed between PostgreSQL replicas, which call `invalidate()`), expiry is
 * checked on every request, and entries are re-read after `cacheMaxAgeMs`.
 */
export class Authenticator {
  private readonly adminDigest: Buffer | null;
  private readonly memo = new Map<string, Entry>();
  private readonly revisionCheckMs: number;
  private readonly cacheMaxAgeMs: number;
  private readonly lastUsedWriteMs: number;
  /** Moves whenever tokens may have been revoked; entries of an older epoch are re-read. */
  private epoch = 0;
  private revision: number | undefined;
  private checkedAtMs = -Infinity;
  private checking: Promise<void> | undefined;
  /** One `authentication failed` line per reason, address and minute (with a count); never the token. */
  private readonly refusals: LogThrottle;

  constructor(
    opts: AuthOptions,
    private readonly deps: AuthDeps,
  ) {
    this.adminDigest = opts.adminToken ? digest(opts.adminToken) : null;
    this.revisionCheckMs = opts.revisionCheckMs ?? 500;
    this.cacheMaxAgeMs = opts.cacheMaxAgeMs ?? 60_000;
    this.lastUsedWriteMs = opts.lastUsedWriteMs ?? 60_000;
    this.refusals = new LogThrottle(deps.clock, opts.refusalLogPeriodMs ?? 60_000);
  }

  /** Resolves the caller and checks that its role may `access`: 401 without a valid token, 403 for the wrong role. */
  async authenticate(req: FastifyRequest, access: Access): Promise<Principal> {
    try {
      const p = await this.resolve(req.headers.authorization);
      allow(p, access);
      principals.set(req, p);
      return p;
    } catch (err) {
      this.noteRefusal(req, err);
      throw err;
    }
  }

  /**
   * Logs a 401/403 at info, rate-limited per (reason, client address): the
   * reason is one of this module's fixed messages, never the header or the token.
   */
  private noteRefusal(req: FastifyRequest, err: unknown): void {
    if (!(err instanceof OutpostError) || (err.code !== 'unauthorized' && err.code !== 'forbidden')) return;
    const count = this.refusals.hit(`${err.code}\u0000${err.message}\u0000${req.ip}`);
    if (count === undefined) return;
    this.deps.log.info('authentication failed', {
      status: err.code === 'unauthorized' ? 401 : 403,
      reason: err.message,
      ip: req.ip,
      method: req.method,
      route: req.routeOptions.url ?? 'unmatched',
      count,
    });
  }

  /** The caller's principal, if the onRequest hook resolved one. */
  known(req: FastifyRequest): Principal | undefined {
    return principals.get(req);
  }

  /** The caller's principal; 401 without a valid token. */
  async principal(req: FastifyRequest): Promise<Principal> {
    return principals.get(req) ?? this.resolve(req.headers.authorization);
  }

  /** Forgets every cached token (a replica NOTIFYed a revocation). */
  invalidate(): void {
    this.epoch++;
    this.memo.clear();
  }

  /** An agent: a token of role agent, bound to one pool. */
  async agent(req: FastifyRequest): Promise<string> {
    const p = await this.principal(req);
    allow(p, 'agent');
    // Agent tokens are created bound to a pool; one without is refused like a token of another role.
    if (p.pool === null) throw new OutpostError('forbidden', 'the agent API needs an agent token of a pool');
    return p.pool;
  }

  /** The job side: an admin token, or a viewer token on GET/HEAD. */
  async admin(req: FastifyRequest): Promise<Principal> {
    const p = await this.principal(req);
    allow(p, req.method === 'GET' || req.method === 'HEAD' ? 'read' : 'write');
    return p;
  }

  private async resolve(header: string | undefined): Promise<Principal> {
    // Only an await when the revision is due: a cached token costs no extra promise.
    if (this.deps.clock.monotonicMs() - this.checkedAtMs >= this.revisionCheckMs) await this.freshen();
    if (typeof header !== 'string') throw new OutpostError('unauthorized', 'missing credentials: send the header Authorization: Bearer <token>');
    const clock = this.deps.clock;
    let e = this.memo.get(header);
    if (e?.epoch !== this.epoch || clock.monotonicMs() - e.loadedAtMs >= this.cacheMaxAgeMs) {
      e = await this.load(header);
      if (this.memo.size >= MAX_REMEMBERED_HEADERS) this.memo.clear();
      this.memo.set(header, e);
    }
    const now = clock.now();
    if (e.expiresAtMs !== null && now >= e.expiresAtMs) {
      this.memo.delete(header);
      throw new OutpostError('unauthorized', 'this token has expired');
    }
    if (e.principal.tokenId !== null && now - e.lastUsedAtMs >= this.lastUsedWriteMs) {
      // Written at most once a minute per token, off the request's path; a failure only delays it.
      e.lastUsedAtMs = now;
      this.deps.tokens.touch(e.principal.tokenId, now).catch((err: unknown) => this.deps.log.debug('could not record token use', { err }));
    }
    return e.principal;
  }

  private async load(header: string): Promise<Entry> {
    const epoch = this.epoch;
    const loadedAtMs = this.deps.clock.monotonicMs();
    const token = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header)?.[1];
    if (token === undefined) throw new OutpostError('unauthorized', 'the Authorization header must be: Bearer <token>');
    // Compared as sha256 digests in constant time: neither length nor prefix leaks.
    if (this.adminDigest && timingSafeEqual(digest(token), this.adminDigest)) {
      return { principal: ADMIN, expiresAtMs: null, loadedAtMs, epoch, lastUsedAtMs: Infinity };
    }
    const t = await this.deps.tokens.lookup(token);
    if (!t) throw new OutpostError('unauthorized', 'unknown token');
    if (t.revokedAt !== null) throw new OutpostError('unauthorized', 'this token was revoked');
    if (t.expiresAt !== null && this.deps.clock.now() >= t.expiresAt) throw new OutpostError('unauthorized', 'this token has expired');
    return {
      principal: Object.freeze({ pool: t.pool, role: t.role, tokenId: t.id }),
      expiresAtMs: t.expiresAt,
      loadedAtMs,
      epoch,
      lastUsedAtMs: t.lastUsedAt ?? -Infinity,
    };
  }

  /**
   * Reads the revocation counter (the caller checks it is due); concurrent
   * requests share one read. A failed read keeps the cache (the store being
   * down fails the request's own queries).
   */
  private async freshen(): Promise<void> {
    this.checking ??= this.readRevision().finally(() => {
      this.checking = undefined;
    });
    await this.checking;
  }

  private async readRevision(): Promise<void> {
    const startedAtMs = this.deps.clock.monotonicMs();
    try {
      const revision = await this.deps.tokens.revision();
      if (this.revision !== undefined && revision !== this.revision) this.invalidate();
      this.revision = revision;
    } catch (err) {
      this.deps.log.debug('could not read the token revision', { err });
    }
    this.checkedAtMs = startedAtMs;
  }
}

/** 403 unless the principal's role may `access`. */
function allow(p: Principal, access: Access): void {
  switch (access) {
    case 'agent':
      if (p.role !== 'agent') throw new OutpostError('forbidden', 'the agent API needs an agent token of a pool');
      return;
    case 'write':
      if (p.role !== 'admin') {
        throw new OutpostError('forbidden', p.role === 'viewer' ? 'a viewer token can only read (GET)' : 'the job API needs an admin token');
      }
      return;
    case 'read':
      if (p.role === 'agent') throw new OutpostError('forbidden', 'the job API needs an admin or viewer token');
      return;
    default:
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** Whether `principal` may see jobs of `pool`. */
export function canSee(principal: Principal, pool: string): boolean {
  return principal.pool === null || principal.pool === pool;
}
