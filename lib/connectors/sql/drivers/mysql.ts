import type { Knex } from 'knex';
import type { Connection, ResultSetHeader } from 'mysql2';
import type { SqlResourceOptions } from '../options.js';
import { callback, poolConfig, readCa } from './common.js';
import type { DriverModule, ExecResult, Row, SqlDriver, Stmt } from './types.js';

/** MySQL and MariaDB through mysql2: streaming pauses the socket, cancel is `KILL QUERY <thread id>`. */
export function mysqlDriver(opts: SqlResourceOptions): DriverModule {
  return {
    knexConfig(): Knex.Config {
      const c = opts.connection;
      const ca = readCa(opts);
      return {
        client: 'mysql2',
        connection: {
          host: c.host,
          port: c.port ?? 3306,
          database: c.database,
          user: c.user,
          password: c.password,
          connectTimeout: opts.connectTimeoutMs,
          // Big integers and decimals as strings: a JSON number would silently lose digits.
          supportBigNumbers: true,
          bigNumberStrings: true,
          ...(opts.tls ? { ssl: { ca, rejectUnauthorized: opts.tls.rejectUnauthorized } } : {}),
        } as Knex.MySql2ConnectionConfig,
        pool: {
          ...poolConfig(opts),
          afterCreate: (conn: Connection, done: (err: Error | null, conn: Connection) => void) => {
            setStatementTimeout(conn, opts.statementTimeoutMs).then(() => done(null, conn), (err: Error) => done(err, conn));
          },
        },
        acquireConnectionTimeout: opts.pool.acquireTimeoutMs,
      };
    },
    create: (knex) => createMysql(knex),
  };
}

/** MariaDB counts seconds in `max_statement_time` (any statement); MySQL counts ms in `max_execution_time` (SELECT only). */
async function setStatementTimeout(conn: Connection, statementTimeoutMs: number): Promise<void> {
  if (!statementTimeoutMs) return;
  const rows = await callback<Array<{ v: string }>>((cb) => conn.query('select version() as v', cb as never));
  const mariadb = /mariadb/i.test(rows[0]?.v ?? '');
  const sql = mariadb ? 'set session max_statement_time = ?' : 'set session max_execution_time = ?';
  await callback((cb) => conn.query(sql, [mariadb ? statementTimeoutMs / 1000 : statementTimeoutMs], cb as never));
}

type MysqlConn = Connection & { __knex__disposed?: unknown };

function createMysql(knex: Knex): SqlDriver {
  const destroy = (conn: unknown): void => {
    (conn as MysqlConn).__knex__disposed = 'destroyed by outpost';
    (conn as MysqlConn).destroy();
  };
  return {
    kind: 'mysql',
    async exec(conn, stmt: Stmt): Promise<ExecResult> {
      const res = await callback<Row[] | ResultSetHeader>((cb) => (conn as MysqlConn).query({ sql: stmt.sql, values: (stmt.bindings.length ? stmt.bindings : undefined) as never }, cb as never));
      if (Array.isArray(res)) return { rows: res, affected: 0 };
      return { rows: [], affected: res.affectedRows ?? 0 };
    },
    async *stream(conn, stmt: Stmt, batchRows: number): AsyncIterable<Row[]> {
      const c = conn as MysqlConn;
      const rows = c.query({ sql: stmt.sql, values: (stmt.bindings.length ? stmt.bindings : undefined) as never }).stream({ highWaterMark: batchRows });
      // mysql2 does not end a query's stream when the connection dies (killed, server gone): the
      // listing would wait forever. The connection's own events end it with a retryable error.
      const lost = (err?: Error): void => {
        rows.destroy(err ?? Object.assign(new Error('the connection to the server was lost'), { code: 'PROTOCOL_CONNECTION_LOST' }));
      };
      c.once('error', lost);
      c.once('end', lost);
      let complete = false;
      try {
        let batch: Row[] = [];
        for await (const row of rows) {
          batch.push(row as Row);
          if (batch.length >= batchRows) {
            yield batch;
            batch = [];
          }
        }
        if (batch.length) yield batch;
        complete = true;
      } finally {
        c.off('error', lost);
        c.off('end', lost);
        // Stopped early: the rest of the result is still on the wire and the
        // socket is paused, so this connection cannot serve anything else.
        if (!complete) destroy(conn);
      }
    },
    async cancel(conn) {
      const threadId = Number((conn as MysqlConn).threadId);
      if (!Number.isInteger(threadId) || threadId <= 0) return;
      const other = (await knex.client.acquireRawConnection()) as Connection;
      try {
        // KILL takes no placeholder; the id is an integer we checked above.
        await callback((cb) => other.query(`KILL QUERY ${threadId}`, cb as never));
      } finally {
        await knex.client.destroyRawConnection(other);
      }
    },
    destroy,
    begin: 'start transaction',
    commit: 'commit',
    rollback: 'rollback',
    versionSql: 'select version() as version',
  };
}
