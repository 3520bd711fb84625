import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../../util/clock.js';
import { run, type Db } from './db.js';

/** Who a token speaks for. `pool` null means every pool (the configured admin token). */
export interface Principal {
  pool: string | null;
  admin: boolean;
}

export interface TokenStoreDeps {
  db: Db;
  clock: Clock;
}

/** sha256 hex of a token: the only form the store keeps. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/**
 * Pool tokens. Only the sha256 of a token is stored; lookups go by hash, so
 * the secret is never compared byte by byte. Answers are cached in memory
 * (tokens are never revoked by this version, so the cache cannot go stale).
 */
export class TokenStore {
  private readonly cache = new Map<string, Principal>();
  private readonly pools = new Set<string>();

  constructor(private readonly deps: TokenStoreDeps) {}

  /** Makes a new token for `pool`; returns the token once (prefixed `opt_` so it is easy to recognise in a leak scan). */
  async create(pool: string, admin: boolean): Promise<string> {
    const token = `opt_${randomBytes(24).toString('base64url')}`;
    await this.deps.db.knex.raw('INSERT INTO outpost_tokens (hash, pool, admin, created_at) VALUES (?, ?, ?, ?)', [
      hashToken(token),
      pool,
      admin ? 1 : 0,
      this.deps.clock.now(),
    ]);
    return token;
  }

  /** The principal of a token, or undefined when unknown. */
  async lookup(token: string): Promise<Principal | undefined> {
    const hash = hashToken(token);
    const hit = this.cache.get(hash);
    if (hit) return hit;
    const [row] = await run<{ pool: string; admin: number | boolean }>(
      this.deps.db,
      'SELECT pool, admin FROM outpost_tokens WHERE hash = ?',
      [hash],
    );
    if (!row) return undefined;
    const p: Principal = { pool: row.pool, admin: Number(row.admin) === 1 };
    this.cache.set(hash, p);
    return p;
  }

  /** Whether a pool exists (has at least one token). Only "yes" is cached: a pool never disappears. */
  async poolExists(pool: string): Promise<boolean> {
    if (this.pools.has(pool)) return true;
    const rows = await run(this.deps.db, 'SELECT 1 AS one FROM outpost_tokens WHERE pool = ? LIMIT 1', [pool]);
    if (rows.length) this.pools.add(pool);
    return rows.length > 0;
  }
}
