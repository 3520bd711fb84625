import { createRequire } from 'node:module';
import type { Knex } from 'knex';
import type pg from 'pg';
import type { SqlResourceOptions } from '../options.js';
import { poolConfig, readCa } from './common.js';
import { copyRows } from './pg-copy.js';
import type { DriverModule, ExecResult, Row, SqlDriver, Stmt } from './types.js';

/** PostgreSQL through node-postgres: server-side cursors via pg-cursor, cancel via pg_cancel_backend. */
export function pgDriver(opts: SqlResourceOptions): DriverModule {
  return {
    knexConfig(): Knex.Config {
      const c = opts.connection;
      const ca = readCa(opts);
      return {
        client: 'pg',
        connection: {
          host: c.host,
          port: c.port ?? 5432,
          database: c.database,
          user: c.user,
          password: c.password,
          application_name: 'outpost',
          connectionTimeoutMillis: opts.connectTimeoutMs,
          // Per statement on the server: a cursor's timer restarts with every fetch (each page).
          ...(opts.statementTimeoutMs ? { statement_timeout: opts.statementTimeoutMs } : {}),
          ...(opts.tls ? { ssl: { ca, rejectUnauthorized: opts.tls.rejectUnauthorized, servername: opts.tls.serverName } } : {}),
        } as Knex.PgConnectionConfig,
        pool: poolConfig(opts),
        acquireConnectionTimeout: opts.pool.acquireTimeoutMs,
      };
    },
    create: (knex) => createPg(knex),
  };
}

/** The part of pg-cursor we use (the package ships no types). */
interface PgCursor {
  read(rows: number): Promise<Row[]>;
  close(): Promise<void>;
}
type CursorClass = new (text: string, values: unknown[]) => PgCursor;
// Loaded on first use, like knex loads pg itself: an agent without PostgreSQL resources does not pay for it.
let cursorClass: CursorClass | undefined;
const Cursor = (): CursorClass => (cursorClass ??= createRequire(import.meta.url)('pg-cursor') as CursorClass);

type PgConn = pg.Client & { processID?: number; connection?: { stream?: { destroy(): void } } };

/** Errors that mean "this statement cannot be wrapped in COPY": run it through a cursor instead. */
const NOT_COPYABLE = new Set(['42601', '0A000']);

function createPg(knex: Knex): SqlDriver {
  const destroy = (conn: unknown): void => {
    (conn as PgConn & { __knex__disposed?: unknown }).__knex__disposed = 'destroyed by outpost';
    (conn as PgConn).connection?.stream?.destroy();
  };
  async function* viaCursor(conn: unknown, stmt: Stmt, batchRows: number): AsyncIterable<Row[]> {
    // A portal read `batchRows` at a time: the server keeps the rest until we ask.
    const cursor = (conn as PgConn).query(new (Cursor())(stmt.sql, stmt.bindings as unknown[]) as never) as unknown as PgCursor;
    let failed = false;
    try {
      for (;;) {
        const rows = await cursor.read(batchRows).catch((err: unknown) => {
          failed = true;
          throw err;
        });
        if (!rows.length) break;
        yield rows;
      }
    } finally {
      // A failed portal is gone already; otherwise (done, or the consumer stopped early) close it so the connection is ready again.
      if (!failed) await cursor.close();
    }
  }
  return {
    kind: 'postgres',
    async exec(conn, stmt: Stmt): Promise<ExecResult> {
      const res = (await (conn as PgConn).query({ text: stmt.sql, values: stmt.bindings as unknown[] })) as pg.QueryResult | pg.QueryResult[];
      // A multi-statement text answers one result per statement; the last one is what the caller asked for.
      const last = Array.isArray(res) ? res[res.length - 1] : res;
      return { rows: (last?.rows ?? []) as Row[], affected: last?.rowCount ?? 0 };
    },
    async *stream(conn, stmt: Stmt, batchRows: number, isCancelled?: () => boolean): AsyncIterable<Row[]> {
      // COPY takes no parameters: statements with bound values use a cursor.
      if (!stmt.bindings.length) {
        let started = false;
        try {
          // statement_timeout bounds the COPY as one statement (the whole listing), where a cursor's restarts with every fetch.
          for await (const batch of copyRows(conn, stmt.sql.trim().replace(/;+\s*$/, ''), batchRows, () => destroy(conn), isCancelled)) {
            started = true;
            yield batch;
          }
          return;
        } catch (err) {
          if (started || !NOT_COPYABLE.has(String((err as { code?: unknown }).code))) throw err;
        }
      }
      yield* viaCursor(conn, stmt, batchRows);
    },
    async cancel(conn) {
      const pid = (conn as PgConn).processID;
      if (!pid) return;
      // A connection outside the pool: the pool may be full of the very queries we want to stop.
      const other = (await knex.client.acquireRawConnection()) as pg.Client;
      try {
        await other.query('select pg_cancel_backend($1)', [pid]);
      } finally {
        await knex.client.destroyRawConnection(other);
      }
    },
    destroy,
    begin: 'begin',
    commit: 'commit',
    rollback: 'rollback',
    versionSql: 'show server_version',
  };
}
