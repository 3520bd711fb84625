import { createRequire } from 'node:module';
import type { Knex } from 'knex';
import type * as Tedious from 'tedious';
import type { SqlResourceOptions } from '../options.js';
import { poolConfig, readCa } from './common.js';
import type { DriverModule, ExecResult, Row, SqlDriver, Stmt } from './types.js';

// Loaded on first use: tedious costs ~30 MB of RSS, which an agent without SQL Server should not pay.
let tediousModule: typeof Tedious | undefined;
const tds = (): typeof Tedious => (tediousModule ??= createRequire(import.meta.url)('tedious') as typeof Tedious);
type Conn = Tedious.Connection & { __knex__disposed?: unknown };
type Column = { metadata: { colName: string }; value: unknown };

/**
 * SQL Server through tedious (knex's mssql client). `requestTimeout` is the
 * statement timeout; an aborted request gets the protocol's attention
 * (`cancel()`) and its connection is then destroyed.
 */
export function mssqlDriver(opts: SqlResourceOptions): DriverModule {
  return {
    knexConfig(): Knex.Config {
      const c = opts.connection;
      const ca = readCa(opts);
      return {
        client: 'mssql',
        connection: {
          server: c.host,
          port: c.port ?? 1433,
          database: c.database,
          user: c.user,
          password: c.password,
          options: {
            port: c.port ?? 1433,
            encrypt: opts.encrypt,
            trustServerCertificate: opts.tls ? !opts.tls.rejectUnauthorized : false,
            ...(ca ? { cryptoCredentialsDetails: { ca } } : {}),
            ...(opts.tls?.serverName ? { serverName: opts.tls.serverName } : {}),
            connectTimeout: opts.connectTimeoutMs,
            requestTimeout: opts.statementTimeoutMs,
            appName: 'outpost',
          },
        } as unknown as Knex.MsSqlConnectionConfig,
        pool: poolConfig(opts),
        acquireConnectionTimeout: opts.pool.acquireTimeoutMs,
      };
    },
    create: () => createMssql(),
  };
}

/** The tedious type of a bound value, as knex's mssql client picks it. */
export function tediousType(value: unknown): (typeof Tedious.TYPES)[keyof typeof Tedious.TYPES] {
  const { TYPES } = tds();
  if (typeof value === 'boolean') return TYPES.Bit;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) return TYPES.Float;
    return value >= -2_147_483_648 && value <= 2_147_483_647 ? TYPES.Int : TYPES.BigInt;
  }
  if (value instanceof Date) return TYPES.DateTime2;
  if (Buffer.isBuffer(value)) return TYPES.VarBinary;
  return TYPES.NVarChar;
}

function request(stmt: Stmt, done: (err: Error | null | undefined, rowCount?: number) => void): Tedious.Request {
  const req = new (tds().Request)(stmt.sql, done);
  // knex's toNative() names the placeholders @p0, @p1, …
  stmt.bindings.forEach((value, i) => req.addParameter(`p${i}`, tediousType(value), value ?? null));
  return req;
}

const toRow = (cols: Column[]): Row => Object.fromEntries(cols.map((col) => [col.metadata.colName, col.value]));

function createMssql(): SqlDriver {
  return {
    kind: 'mssql',
    exec(conn, stmt: Stmt): Promise<ExecResult> {
      return new Promise((resolve, reject) => {
        const rows: Row[] = [];
        const req = request(stmt, (err, rowCount) => (err ? reject(err) : resolve({ rows, affected: rowCount ?? 0 })));
        req.on('row', (cols: Column[]) => rows.push(toRow(cols)));
        (conn as Conn).execSql(req);
      });
    },
    async *stream(conn, stmt: Stmt, batchRows: number): AsyncIterable<Row[]> {
      const buffered: Row[] = [];
      let finished = false;
      let failure: Error | undefined;
      let wake: (() => void) | undefined;
      const req = request(stmt, (err) => {
        failure = err ?? undefined;
        finished = true;
        wake?.();
      });
      req.on('row', (cols: Column[]) => {
        buffered.push(toRow(cols));
        // Backpressure: tedious stops reading the socket while paused.
        if (buffered.length >= batchRows) req.pause();
        wake?.();
      });
      (conn as Conn).execSql(req);
      try {
        for (;;) {
          if (buffered.length) {
            const batch = buffered.splice(0, buffered.length);
            req.resume();
            yield batch;
            continue;
          }
          if (failure) throw failure;
          if (finished) return;
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
        }
      } finally {
        if (!finished) {
          (conn as Conn).cancel();
          (conn as Conn).__knex__disposed = 'listing stopped early';
        }
      }
    },
    async cancel(conn) {
      (conn as Conn).cancel();
    },
    destroy(conn) {
      (conn as Conn).__knex__disposed = 'destroyed by outpost';
      (conn as Conn).close();
    },
    begin: 'begin transaction',
    commit: 'commit transaction',
    rollback: 'rollback transaction',
    versionSql: "select cast(serverproperty('ProductVersion') as nvarchar(128)) as version",
  };
}
