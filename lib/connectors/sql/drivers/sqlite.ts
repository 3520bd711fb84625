import { existsSync } from 'node:fs';
import type Database from 'better-sqlite3';
import { OutpostError } from '../../../util/errors.js';
import type { Knex } from 'knex';
import type { SqlResourceOptions } from '../options.js';
import { poolConfig } from './common.js';
import type { DriverModule, ExecResult, Row, SqlDriver, Stmt } from './types.js';

/** How long a statement waits for another connection's write lock before a retryable `busy`. */
export const SQLITE_BUSY_TIMEOUT_MS = 1000;

/**
 * SQLite through better-sqlite3. Statements are synchronous, so a running one
 * cannot be cancelled; a listing checks its AbortSignal between pages.
 */
export function sqliteDriver(opts: SqlResourceOptions): DriverModule {
  return {
    knexConfig(): Knex.Config {
      return {
        client: 'better-sqlite3',
        connection: { filename: opts.connection.filename as string },
        useNullAsDefault: true,
        pool: {
          ...poolConfig(opts),
          afterCreate: (db: Database.Database, done: (err: Error | null, db: Database.Database) => void) => {
            try {
              // Wait briefly for another writer instead of failing at once with SQLITE_BUSY. Briefly:
              // better-sqlite3 waits synchronously, and a blocked event loop misses lease heartbeats.
              db.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
              done(null, db);
            } catch (err) {
              done(err as Error, db);
            }
          },
        },
        acquireConnectionTimeout: opts.pool.acquireTimeoutMs,
      };
    },
    create: () => createSqlite(opts),
  };
}

/** better-sqlite3 binds no booleans or Dates (knex converts them the same way). */
function bindings(values: readonly unknown[]): unknown[] {
  return values.map((v) => (typeof v === 'boolean' ? Number(v) : v instanceof Date ? v.valueOf() : v));
}

function createSqlite(opts: SqlResourceOptions): SqlDriver {
  const file = opts.connection.filename as string;
  return {
    kind: 'sqlite',
    precheck() {
      // better-sqlite3 creates a missing file: a typo in the path would silently open an empty database.
      if (file !== ':memory:' && !file.startsWith('file:') && !existsSync(file)) {
        throw new OutpostError('config_error', `resources.${opts.name}.connection.filename: ${file} does not exist`);
      }
    },
    async exec(conn, stmt: Stmt): Promise<ExecResult> {
      const s = (conn as Database.Database).prepare(stmt.sql);
      if (s.reader) return { rows: s.all(...bindings(stmt.bindings)) as Row[], affected: 0 };
      const info = s.run(...bindings(stmt.bindings));
      return { rows: [], affected: info.changes };
    },
    async *stream(conn, stmt: Stmt, batchRows: number): AsyncIterable<Row[]> {
      const s = (conn as Database.Database).prepare(stmt.sql);
      if (!s.reader) {
        s.run(...bindings(stmt.bindings));
        return;
      }
      // iterate() steps the statement one row at a time; return() (on break or error) resets it.
      const it = s.iterate(...bindings(stmt.bindings)) as IterableIterator<Row>;
      try {
        let batch: Row[] = [];
        for (const row of it) {
          batch.push(row);
          if (batch.length >= batchRows) {
            yield batch;
            batch = [];
          }
        }
        if (batch.length) yield batch;
      } finally {
        it.return?.();
      }
    },
    async cancel() {
      // Nothing runs between our awaits: the signal is checked between pages.
    },
    destroy() {},
    begin: 'begin immediate',
    commit: 'commit',
    rollback: 'rollback',
    versionSql: 'select sqlite_version() as version',
  };
}
