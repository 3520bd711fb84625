import type { Knex } from 'knex';
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Logger } from '../../log/index.js';
import { sqliteRun, transact } from './sqlite.js';

/** The two supported stores. */
export type Dialect = 'sqlite' | 'postgres';

/** A knex handle with the dialect it speaks. */
export interface Db {
  knex: Knex;
  dialect: Dialect;
}

/** The dialect a store URL selects (`sqlite:<file>` or `postgres://…`). */
export function dialectOf(url: string): Dialect {
  return /^postgres(ql)?:\/\//.test(url) ? 'postgres' : 'sqlite';
}

/**
 * knex configuration for a store URL. SQLite runs in WAL with synchronous
 * NORMAL (durable across process crashes, fast commits) and a busy timeout so
 * that a CLI `token create` beside a running proxy waits instead of failing.
 */
export function knexConfig(url: string, log?: Logger): Knex.Config {
  // knex writes its warnings (lost connections, pool errors) to the console unless given a logger.
  const logging = log
    ? {
        log: {
          warn: (m: unknown) => log.warn(`store: ${String(m)}`),
          error: (m: unknown) => log.error(`store: ${String(m)}`),
          deprecate: (m: unknown) => log.debug(`store: ${String(m)}`),
          debug: () => {},
        },
      }
    : {};
  if (dialectOf(url) === 'postgres') {
    return { client: 'pg', connection: url, pool: { min: 0, max: 10 }, ...logging };
  }
  const file = resolve(url.slice('sqlite:'.length));
  mkdirSync(dirname(file), { recursive: true });
  return {
    client: 'better-sqlite3',
    connection: { filename: file },
    ...logging,
    useNullAsDefault: true,
    pool: {
      min: 1,
      max: 1,
      afterCreate: (conn: { pragma(s: string): unknown }, done: (err: Error | null, conn: unknown) => void) => {
        conn.pragma('journal_mode = WAL');
        conn.pragma('synchronous = NORMAL');
        conn.pragma('busy_timeout = 5000');
        conn.pragma('foreign_keys = OFF');
        // The claim's IN-list and sorts stay in memory. Measured and left alone: a bigger
        // cache_size or mmap_size made claims and results slower (each commit walks the
        // page cache's hash), UPDATE … FROM json_each ~20× slower than runEach.
        conn.pragma('temp_store = MEMORY');
        done(null, conn);
      },
    },
  };
}

/** Rows of a `knex.raw` answer, whichever driver produced it. */
export function rowsOf<T>(result: unknown): T[] {
  if (Array.isArray(result)) return result as T[];
  const rows = (result as { rows?: T[] } | undefined)?.rows;
  return rows ?? [];
}

/** Runs a raw statement and returns its rows (SELECT or … RETURNING). */
export async function query<T>(k: Knex | Knex.Transaction, sql: string, bindings: readonly unknown[] = []): Promise<T[]> {
  return rowsOf<T>(await k.raw(sql, bindings as Knex.RawBinding[]));
}

/**
 * The hot-path form of `query`: on SQLite it runs on knex's own pooled
 * connection but keeps prepared statements (knex prepares every statement
 * anew, which doubled the cost of a claim), and skips the pool when the
 * connection is idle (see `idleConnection` in sqlite.ts). The pool of one connection
 * still serialises it with knex transactions. PostgreSQL goes through knex.
 */
export async function run<T>(db: Db, sql: string, bindings: readonly unknown[] = []): Promise<T[]> {
  if (db.dialect !== 'sqlite') return query<T>(db.knex, sql, bindings);
  return sqliteRun<T>(db, sql, bindings);
}

export { runEach, transact, type SyncQuery } from './sqlite.js';

/** One statement of an `atomic` unit: `const rows = yield stmt(sql, bindings)`. */
export interface Stmt {
  sql: string;
  bindings: readonly unknown[];
}
export function stmt(sql: string, bindings: readonly unknown[] = []): Stmt {
  return { sql, bindings };
}

/**
 * Runs a unit of statements written once for both dialects as a generator
 * (each `yield stmt(…)` gets that statement's rows back) in one transaction:
 * on SQLite synchronously through `transact`, on PostgreSQL through a knex
 * transaction. The generator must not do I/O of its own.
 */
export async function atomic<R>(db: Db, steps: () => Generator<Stmt, R, unknown[]>): Promise<R> {
  if (db.dialect === 'sqlite') {
    return transact(db, (q) => {
      const g = steps();
      for (let r = g.next(); ; ) {
        if (r.done) return r.value;
        r = g.next(q<unknown>(r.value.sql, r.value.bindings));
      }
    });
  }
  return db.knex.transaction(async (trx) => {
    const g = steps();
    for (let r = g.next(); ; ) {
      if (r.done) return r.value;
      r = g.next(await query<unknown>(trx, r.value.sql, r.value.bindings));
    }
  });
}

/** `?, ?, ?` for n bindings. */
export function marks(n: number): string {
  return new Array(n).fill('?').join(', ');
}

const BIG = { sqlite: 'INTEGER', postgres: 'BIGINT' } as const;

/**
 * Idempotent schema creation, run at every start. Times are integer epoch
 * milliseconds from the injected Clock in both dialects, so lease expiry and
 * retry delays obey a FakeClock in tests.
 */
export async function migrate(db: Db): Promise<void> {
  const big = BIG[db.dialect];
  const statements = [
    `CREATE TABLE IF NOT EXISTS outpost_jobs (
      id TEXT PRIMARY KEY,
      pool TEXT NOT NULL,
      type TEXT NOT NULL,
      resource TEXT,
      payload TEXT NOT NULL,
      status TEXT NOT NULL,
      attempt INTEGER NOT NULL DEFAULT 0,
      max_attempts INTEGER NOT NULL,
      timeout_ms ${big} NOT NULL,
      idempotency_key TEXT,
      lease_token TEXT,
      result_token TEXT,
      agent_id TEXT,
      lease_expires_at ${big},
      available_at ${big} NOT NULL,
      leases INTEGER NOT NULL DEFAULT 0,
      result TEXT,
      error TEXT,
      output_records INTEGER NOT NULL DEFAULT 0,
      created_at ${big} NOT NULL,
      started_at ${big},
      finished_at ${big}
    )`,
    // Partial indexes: a claim or a result touches only the small index of its
    // state, not one that also holds every finished job.
    `CREATE INDEX IF NOT EXISTS outpost_jobs_queued ON outpost_jobs (pool, available_at, id) WHERE status = 'queued'`,
    `CREATE INDEX IF NOT EXISTS outpost_jobs_leased ON outpost_jobs (lease_expires_at) WHERE status = 'leased'`,
    // Listings page newest first by (created_at, id) of a pool; retention reads it oldest first. It
    // replaces (pool, created_at). No index on status: it cost the claim and result path ~40 %, and
    // every further full index costs each (non-HOT) update on PostgreSQL (bench/proxy-scale.ts
    // --hotpath). Open jobs are listed from the partial indexes above.
    `DROP INDEX IF EXISTS outpost_jobs_list`,
    `CREATE INDEX IF NOT EXISTS outpost_jobs_pool_created ON outpost_jobs (pool, created_at, id)`,
    `CREATE UNIQUE INDEX IF NOT EXISTS outpost_jobs_idem ON outpost_jobs (pool, idempotency_key)`,
    `CREATE TABLE IF NOT EXISTS outpost_output (
      job_id TEXT NOT NULL,
      lease_token TEXT NOT NULL,
      seq INTEGER NOT NULL,
      records TEXT NOT NULL,
      count INTEGER NOT NULL,
      PRIMARY KEY (job_id, lease_token, seq)
    )`,
    `CREATE TABLE IF NOT EXISTS outpost_tokens (
      hash TEXT PRIMARY KEY,
      pool TEXT NOT NULL,
      admin INTEGER NOT NULL,
      created_at ${big} NOT NULL
    )`,
    `CREATE INDEX IF NOT EXISTS outpost_tokens_pool ON outpost_tokens (pool)`,
    // Moved by every token revocation: replicas compare it to drop their auth caches (TokenStore.revision).
    `CREATE TABLE IF NOT EXISTS outpost_token_revision (id INTEGER PRIMARY KEY, revision ${big} NOT NULL)`,
    `INSERT INTO outpost_token_revision (id, revision) VALUES (1, 0) ON CONFLICT DO NOTHING`,
    `CREATE TABLE IF NOT EXISTS outpost_agents (
      pool TEXT NOT NULL,
      agent_id TEXT NOT NULL,
      hostname TEXT NOT NULL,
      version TEXT NOT NULL,
      resources TEXT NOT NULL,
      last_seen_at ${big} NOT NULL,
      PRIMARY KEY (pool, agent_id)
    )`,
    `CREATE INDEX IF NOT EXISTS outpost_agents_seen ON outpost_agents (last_seen_at)`,
    // One row per lease of a job (attempts.ts): who ran it, when, how it ended. One index (the key), so a
    // claim costs one more b-tree insert per job; SQLite keeps the rows in it (WITHOUT ROWID).
    `CREATE TABLE IF NOT EXISTS outpost_job_attempts (
      job_id TEXT NOT NULL,
      lease_token TEXT NOT NULL,
      attempt INTEGER NOT NULL,
      agent_id TEXT NOT NULL,
      started_at ${big} NOT NULL,
      ended_at ${big},
      outcome TEXT NOT NULL,
      error TEXT,
      PRIMARY KEY (job_id, lease_token)
    )${db.dialect === 'sqlite' ? ' WITHOUT ROWID' : ''}`,
    // A pool's public sealing key (secrets in payloads): the job side seals passwords with it (store/pools.ts).
    `CREATE TABLE IF NOT EXISTS outpost_pool_keys (
      pool TEXT PRIMARY KEY,
      public_key TEXT NOT NULL,
      algorithm TEXT NOT NULL,
      updated_at ${big} NOT NULL
    )`,
    // Output bytes kept per pool: the per-pool quota is checked without summing the pool's pages.
    `CREATE TABLE IF NOT EXISTS outpost_pool_usage (
      pool TEXT PRIMARY KEY,
      output_bytes ${big} NOT NULL DEFAULT 0
    )`,
  ];
  // Columns added after the first release, then the indexes that use them.
  const columns: Array<[string, string, string]> = [
    ['outpost_jobs', 'expires_at', big],
    ['outpost_jobs', 'output_bytes', `${big} NOT NULL DEFAULT 0`],
    ['outpost_output', 'bytes', `${big} NOT NULL DEFAULT 0`],
    // Token lifecycle: a public id (list, revoke), a role, expiry, revocation, last use.
    ['outpost_tokens', 'id', 'TEXT'],
    ['outpost_tokens', 'role', 'TEXT'],
    ['outpost_tokens', 'expires_at', big],
    ['outpost_tokens', 'revoked_at', big],
    ['outpost_tokens', 'last_used_at', big],
    // Presence (agents.ts): a goodbye (draining | offline, '' otherwise) and when the proxy expects the next contact.
    ['outpost_agents', 'state', "TEXT NOT NULL DEFAULT ''"],
    ['outpost_agents', 'contact_by', big],
  ];
  const late = [
    // The expiry sweep reads queued jobs past their time (partial: only queued jobs are in it).
    `CREATE INDEX IF NOT EXISTS outpost_jobs_expiry ON outpost_jobs (expires_at) WHERE status = 'queued'`,
    // Tokens made before roles: an admin flag becomes role admin, else agent; each gets a random id.
    `UPDATE outpost_tokens SET role = CASE WHEN admin = 1 THEN 'admin' ELSE 'agent' END WHERE role IS NULL`,
    db.dialect === 'postgres'
      ? `UPDATE outpost_tokens SET id = 'tok_' || substr(md5(random()::text || hash), 1, 12) WHERE id IS NULL`
      : `UPDATE outpost_tokens SET id = 'tok_' || lower(hex(randomblob(6))) WHERE id IS NULL`,
    `CREATE UNIQUE INDEX IF NOT EXISTS outpost_tokens_id ON outpost_tokens (id)`,
  ];
  if (db.dialect === 'postgres') {
    // Two replicas starting together must not race on CREATE … IF NOT EXISTS.
    await db.knex.transaction(async (trx) => {
      await trx.raw('SELECT pg_advisory_xact_lock(7242001)');
      for (const s of statements) await trx.raw(s);
      for (const [table, column, type] of columns) await trx.raw(`ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS ${column} ${type}`);
      for (const s of late) await trx.raw(s);
    });
    return;
  }
  for (const s of statements) await db.knex.raw(s);
  for (const [table, column, type] of columns) {
    const present = rowsOf<{ name: string }>(await db.knex.raw(`PRAGMA table_info(${table})`));
    if (!present.some((c) => c.name === column)) await db.knex.raw(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
  }
  for (const s of late) await db.knex.raw(s);
}
