import type { SqlKind, SqlResourceOptions } from '../options.js';
import { mssqlDriver } from './mssql.js';
import { mysqlDriver } from './mysql.js';
import { pgDriver } from './pg.js';
import { sqliteDriver } from './sqlite.js';
import type { DriverModule } from './types.js';

export type { DriverModule, ExecResult, Row, SqlDriver, Stmt } from './types.js';

const MODULES: Record<SqlKind, (opts: SqlResourceOptions) => DriverModule> = {
  postgres: pgDriver,
  mysql: mysqlDriver,
  mssql: mssqlDriver,
  sqlite: sqliteDriver,
};

/** The driver module of a resource's kind. */
export function driverModule(opts: SqlResourceOptions): DriverModule {
  return MODULES[opts.kind](opts);
}
