import type { Knex } from 'knex';
import type { Logger } from '../../log/index.js';
import { openSqlite, SqliteConn } from './sqlite.js';

/** The two supported stores. */
export type Dialect = 'sqlite' | 'postgres';

/**
 * An open store. SQLite is one better-sqlite3 connection used directly
 * (sqlite.ts); PostgreSQL goes through knex's pool (pg), which also runs its
 * transactions.
 */
export type Db = { dialect: 'sqlite'; sqlite: SqliteConn } | { dialect: 'postgres'; knex: Knex };

/** The dialect a store URL selects (`sqlite:<file>` or `postgres://…`). */
export function dialectOf(url: string): Dialect {
  return /^postgres(ql)?:\/\//.test(url) ? 'postgres' : 'sqlite';
}

/** knex configuration for a PostgreSQL store URL. */
export function knexConfig(url: string, log?: Logger): Knex.Config {
  // knex writes its warnings (lost connections, pool errors) to the console unless given a logger.
  const logging = log
    ? {
        log: {
          warn: (m: unknown) => log.warn(`store: ${String(m)}`),
          error: (m: unknown) => log.error(`store: ${String(m)}`),
          deprecate: (m: unknown) => log.debug(`store: ${String(m)}`),
          debug: () => {
            // Dropped: knex's debug output is query tracing, too verbose for the store's log.
          },
        },
      }
    : {};
  return { client: 'pg', connection: url, pool: { min: 0, max: 10 }, ...logging };
}

/** Opens the store of a URL (no schema work: see `migrate`). knex and pg are loaded only for PostgreSQL. */
export async function openDb(url: string, log?: Logger): Promise<Db> {
  if (dialectOf(url) === 'sqlite') return { dialect: 'sqlite', sqlite: openSqlite(url) };
  const { default: knex } = await import('knex');
  return { dialect: 'postgres', knex: knex(knexConfig(url, log)) };
}

/** Closes the store (idempotent). */
export async function closeDb(db: Db): Promise<void> {
  if (db.dialect === 'postgres') await db.knex.destroy();
  else db.sqlite.close();
}

/** Rows of a `knex.raw` answer. */
export function rowsOf<T>(result: unknown): T[] {
  if (Array.isArray(result)) return result as T[];
  const rows = (result as { rows?: T[] } | undefined)?.rows;
  return rows ?? [];
}

/** Runs a raw statement through knex (PostgreSQL) and returns its rows (SELECT or … RETURNING). */
export async function query<T>(k: Knex | Knex.Transaction, sql: string, bindings: readonly unknown[] = []): Promise<T[]> {
  return rowsOf<T>(await k.raw(sql, bindings as Knex.RawBinding[]));
}

/**
 * Runs one statement (`?` placeholders) and returns its rows: on SQLite a
 * cached prepared statement, on PostgreSQL through knex. An error rejects,
 * whichever the dialect.
 */
export async function run<T>(db: Db, sql: string, bindings: readonly unknown[] = []): Promise<T[]> {
  if (db.dialect === 'sqlite') return db.sqlite.all<T>(sql, bindings);
  return query<T>(db.knex, sql, bindings);
}

/** The health check's query. */
export async function ping(db: Db): Promise<void> {
  await run(db, 'SELECT 1');
}

/** One statement of an `atomic` unit: `const rows = yield stmt(sql, bindings)`. */
export interface Stmt {
  sql: string;
  bindings: readonly unknown[];
}
export function stmt(sql: string, bindings: readonly unknown[] = []): Stmt {
  return { sql, bindings };
}

/** A unit of statements written once for both dialects (see `atomic`). */
export type Unit<R> = () => Generator<Stmt, R, unknown[]>;

/**
 * Runs a unit on an open SQLite connection, synchronously: inside a caller's
 * transaction it joins it (a batch of units is one transaction).
 */
export function drive<R>(c: SqliteConn, steps: Unit<R>): R {
  const g = steps();
  for (let r = g.next(); ; ) {
    if (r.done) return r.value;
    r = g.next(c.all<unknown>(r.value.sql, r.value.bindings));
  }
}

/**
 * Runs a unit of statements written once for both dialects as a generator
 * (each `yield stmt(…)` gets that statement's rows back) in one transaction:
 * on SQLite synchronously, on PostgreSQL through a knex transaction. The
 * generator must not do I/O of its own.
 */
export async function atomic<R>(db: Db, steps: Unit<R>): Promise<R> {
  if (db.dialect === 'sqlite') {
    const c = db.sqlite;
    return c.transaction(() => drive(c, steps));
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
