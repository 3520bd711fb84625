import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { OutpostError } from '../../util/errors.js';
import type { Principal, TokenStore } from '../store/tokens.js';

const principals = new WeakMap<FastifyRequest, Principal>();
/** Authorization header values remembered; beyond this the memo is emptied (agents reuse a few tokens). */
const MAX_REMEMBERED_HEADERS = 1024;

/** Resolves bearer tokens to principals: the configured admin token, else a stored pool token. */
export class Authenticator {
  private readonly adminDigest: Buffer | null;
  /**
   * Principals of Authorization headers already accepted: a request with a
   * known header costs one Map lookup instead of a regex and two sha256. Only
   * accepted tokens are kept, and tokens are never revoked in this version
   * (see TokenStore), so the memo cannot go stale. It lives in memory only,
   * as the header itself does while a request is served.
   */
  private readonly accepted = new Map<string, Principal>();

  constructor(
    adminToken: string | null,
    private readonly tokens: TokenStore,
  ) {
    this.adminDigest = adminToken ? digest(adminToken) : null;
  }

  /**
   * Resolves the caller once per request, before body validation (an
   * unauthenticated caller learns nothing, not even the schemas).
   */
  async authenticate(req: FastifyRequest): Promise<void> {
    principals.set(req, await this.resolve(req));
  }

  /** The caller's principal; 401 without a known token. */
  async principal(req: FastifyRequest): Promise<Principal> {
    return principals.get(req) ?? this.resolve(req);
  }

  private async resolve(req: FastifyRequest): Promise<Principal> {
    const header = req.headers.authorization;
    const known = typeof header === 'string' ? this.accepted.get(header) : undefined;
    if (known) return known;
    const p = await this.verify(header);
    if (this.accepted.size >= MAX_REMEMBERED_HEADERS) this.accepted.clear();
    this.accepted.set(header as string, p);
    return p;
  }

  private async verify(header: string | undefined): Promise<Principal> {
    const m = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!m) throw new OutpostError('unauthorized', 'a bearer token is required');
    const token = m[1]!;
    // Compared as sha256 digests in constant time: neither length nor prefix leaks.
    if (this.adminDigest && timingSafeEqual(digest(token), this.adminDigest)) return { pool: null, admin: true };
    const p = await this.tokens.lookup(token);
    if (!p) throw new OutpostError('unauthorized', 'unknown token');
    return p;
  }

  /** An agent: a token bound to one pool. */
  async agent(req: FastifyRequest): Promise<string> {
    const p = await this.principal(req);
    if (p.pool === null) throw new OutpostError('forbidden', 'the agent API needs a pool token');
    return p.pool;
  }

  /** An admin: the configured admin token or an `--admin` pool token. */
  async admin(req: FastifyRequest): Promise<Principal> {
    const p = await this.principal(req);
    if (!p.admin) throw new OutpostError('forbidden', 'this needs an admin token');
    return p;
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** Whether `principal` may see jobs of `pool`. */
export function canSee(principal: Principal, pool: string): boolean {
  return principal.pool === null || principal.pool === pool;
}
