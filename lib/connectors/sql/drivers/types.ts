import type { Knex } from 'knex';
import type { SqlKind } from '../options.js';

/** A statement in the driver's native placeholder form (`$1`, `?`, `@p0`) with its bound values. */
export interface Stmt {
  sql: string;
  bindings: readonly unknown[];
}

export type Row = Record<string, unknown>;

/** Rows of a statement (empty for DML/DDL) and the rows it changed. */
export interface ExecResult {
  rows: Row[];
  affected: number;
}

/**
 * What differs between databases once knex has compiled a statement: how to
 * run it on a raw pooled connection, stream its rows with backpressure, stop
 * it from outside, and the few fixed statements of a transaction.
 * Statements run on the raw connection (not through knex's runner) because
 * knex neither streams with backpressure on every dialect nor reports
 * affected rows for raw statements, nor lets us cancel.
 */
export interface SqlDriver {
  readonly kind: SqlKind;
  /** Runs one statement to completion. */
  exec(conn: unknown, stmt: Stmt): Promise<ExecResult>;
  /**
   * Yields rows in batches of at most `batchRows` as the server sends them,
   * holding about one batch in memory; breaking out of the loop closes the
   * cursor. Batches, not single rows: a million awaits cost more than the rows.
   */
  stream(conn: unknown, stmt: Stmt, batchRows: number, isCancelled?: () => boolean): AsyncIterable<Row[]>;
  /** Stops whatever `conn` is running, from outside (another connection, or the protocol's attention). */
  cancel(conn: unknown): Promise<void>;
  /** Closes the socket at once: the last resort when a cancel is not honoured. */
  destroy(conn: unknown): void;
  /** Checks made before a connection is taken (SQLite: the file exists, or opening it would create it). */
  precheck?(): void;
  readonly begin: string;
  readonly commit: string;
  readonly rollback: string;
  /** A statement whose first row's first column is the server version. */
  readonly versionSql: string;
}

/** What a driver module provides: its knex config and its driver over a knex instance. */
export interface DriverModule {
  knexConfig(): Knex.Config;
  create(knex: Knex): SqlDriver;
}
