import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../../util/clock.js';
import { OutpostError } from '../../util/errors.js';
import { atomic, run, stmt, type Db } from './db.js';
import { TOKENS_CHANNEL } from './events.js';

/**
 * What a token may do. `agent`: only the agent API of its pool. `admin`: the
 * job side of its pool (enqueue, cancel, read), never the agent API.
 * `viewer`: only GET on the job side (jobs, job output, agents): the dashboard.
 */
export type TokenRole = 'agent' | 'admin' | 'viewer';
export const TOKEN_ROLES: readonly TokenRole[] = ['agent', 'admin', 'viewer'];

/** Who a request speaks for. `pool` null means every pool (the configured admin token, role admin). */
export interface Principal {
  pool: string | null;
  role: TokenRole;
  /** The stored token's id; null for the configured admin token. */
  tokenId: string | null;
}

/** A stored token as `token list` shows it: never the secret, never its hash. Times in epoch ms. */
export interface TokenInfo {
  id: string;
  pool: string;
  role: TokenRole;
  createdAt: number;
  lastUsedAt: number | null;
  expiresAt: number | null;
  revokedAt: number | null;
}

export interface TokenStoreDeps {
  db: Db;
  clock: Clock;
}

/** sha256 hex of a token: the only form the store keeps. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Token ids as `token create` makes them: `tok_` and 12 hex digits, unrelated to the secret. */
export const TOKEN_ID = /^tok_[0-9a-f]{12}$/;

interface TokenRow {
  id: string;
  pool: string;
  role: string | null;
  admin: number | boolean;
  created_at: number | string;
  last_used_at: number | string | null;
  expires_at: number | string | null;
  revoked_at: number | string | null;
}

const COLUMNS = 'id, pool, role, admin, created_at, last_used_at, expires_at, revoked_at';
const num = (v: number | string | null): number | null => (v === null ? null : Number(v));

function infoOf(row: TokenRow): TokenInfo {
  // Rows written before roles existed have only the admin flag (the migration fills `role`; this covers a downgrade).
  const role = TOKEN_ROLES.includes(row.role as TokenRole) ? (row.role as TokenRole) : Number(row.admin) === 1 ? 'admin' : 'agent';
  return {
    id: row.id,
    pool: row.pool,
    role,
    createdAt: Number(row.created_at),
    lastUsedAt: num(row.last_used_at),
    expiresAt: num(row.expires_at),
    revokedAt: num(row.revoked_at),
  };
}

/**
 * Pool tokens. Only the sha256 of a token is stored; lookups go by hash, so
 * the secret is never compared byte by byte. Nothing is cached here: the
 * Authenticator keeps the short-lived cache and asks `revision()` whether a
 * token was revoked since (a counter bumped in the revoking transaction, also
 * NOTIFYed to other replicas on PostgreSQL).
 */
export class TokenStore {
  private readonly pools = new Set<string>();

  constructor(private readonly deps: TokenStoreDeps) {}

  /**
   * Makes a new token; returns the secret once (prefixed `opt_` so that a leak
   * scan recognises it) and its id (for `token list` and `token revoke`).
   */
  async create(opts: { pool: string; role: TokenRole; expiresAtMs?: number | null }): Promise<{ id: string; token: string }> {
    const now = this.deps.clock.now();
    if (opts.expiresAtMs != null && opts.expiresAtMs <= now) throw new OutpostError('invalid_request', 'expires: must be in the future');
    const token = `opt_${randomBytes(24).toString('base64url')}`;
    const id = `tok_${randomBytes(6).toString('hex')}`;
    await run(this.deps.db, 'INSERT INTO outpost_tokens (hash, id, pool, role, admin, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)', [
      hashToken(token),
      id,
      opts.pool,
      opts.role,
      // Kept for a proxy of the previous version on the same store: an admin flag, never an agent's.
      opts.role === 'admin' ? 1 : 0,
      now,
      opts.expiresAtMs ?? null,
    ]);
    return { id, token };
  }

  /** The stored token for a secret (revoked and expired ones included: the caller says why it refuses), or undefined. */
  async lookup(token: string): Promise<TokenInfo | undefined> {
    const [row] = await run<TokenRow>(this.deps.db, `SELECT ${COLUMNS} FROM outpost_tokens WHERE hash = ?`, [hashToken(token)]);
    return row ? infoOf(row) : undefined;
  }

  /** Every token, or those of `pool`, oldest first. */
  async list(pool?: string): Promise<TokenInfo[]> {
    const rows = pool === undefined
      ? await run<TokenRow>(this.deps.db, `SELECT ${COLUMNS} FROM outpost_tokens ORDER BY created_at, id`)
      : await run<TokenRow>(this.deps.db, `SELECT ${COLUMNS} FROM outpost_tokens WHERE pool = ? ORDER BY created_at, id`, [pool]);
    return rows.map(infoOf);
  }

  /**
   * Revokes a token by id. The revision counter moves in the same transaction
   * (replicas polling it drop their caches) and, on PostgreSQL, a NOTIFY
   * delivered at commit tells the other replicas at once.
   */
  async revoke(id: string): Promise<'revoked' | 'already_revoked' | 'not_found'> {
    const now = this.deps.clock.now();
    const db = this.deps.db;
    return atomic(db, function* () {
      const found = (yield stmt('SELECT revoked_at FROM outpost_tokens WHERE id = ?', [id])) as Array<{ revoked_at: unknown }>;
      const [first] = found;
      if (!first) return 'not_found' as const;
      if (first.revoked_at !== null) return 'already_revoked' as const;
      yield stmt('UPDATE outpost_tokens SET revoked_at = ? WHERE id = ?', [now, id]);
      yield stmt('UPDATE outpost_token_revision SET revision = revision + 1 WHERE id = 1');
      if (db.dialect === 'postgres') yield stmt('SELECT pg_notify(?, ?)', [TOKENS_CHANNEL, id]);
      return 'revoked' as const;
    });
  }

  /** Records that a token was used (the caller throttles: at most once a minute per token). */
  async touch(id: string, atMs: number): Promise<void> {
    await run(this.deps.db, 'UPDATE outpost_tokens SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)', [atMs, id, atMs]);
  }

  /** The revocation counter: it changes whenever a token is revoked, by any process. */
  async revision(): Promise<number> {
    const [row] = await run<{ revision: number | string }>(this.deps.db, 'SELECT revision FROM outpost_token_revision WHERE id = 1');
    return Number(row?.revision ?? 0);
  }

  /** Whether a pool exists (has at least one token). Only "yes" is cached: a pool never disappears. */
  async poolExists(pool: string): Promise<boolean> {
    if (this.pools.has(pool)) return true;
    const rows = await run(this.deps.db, 'SELECT 1 AS one FROM outpost_tokens WHERE pool = ? LIMIT 1', [pool]);
    if (rows.length) this.pools.add(pool);
    return rows.length > 0;
  }
}

const DURATION = /^(\d{1,6})(s|m|h|d|w)$/;
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * `--expires`: a duration from now (`30d`, `12h`, `90m`, `45s`, `2w`) or an
 * ISO 8601 date-time (`2027-01-31`, `2027-01-31T18:00:00Z`). Epoch ms.
 */
export function parseExpiry(value: string, nowMs: number): number {
  const d = DURATION.exec(value.trim());
  const unitMs = d ? UNIT_MS[d[2] ?? ''] : undefined;
  if (d && unitMs !== undefined) return nowMs + Number(d[1]) * unitMs;
  const at = /^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(value.trim()) ? Date.parse(value.trim()) : NaN;
  if (!Number.isFinite(at)) throw new OutpostError('invalid_request', '--expires: must be a duration (30d, 12h, 90m, 45s, 2w) or an ISO 8601 date-time');
  if (at <= nowMs) throw new OutpostError('invalid_request', '--expires: must be in the future');
  return at;
}
