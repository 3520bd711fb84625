import type { GrantPayload, SetAccountEnabledPayload } from '../../protocol/operations.js';
import { OutpostError } from '../../util/errors.js';
import type { SqlDatabase } from './database.js';
import type { Row, Stmt } from './drivers/index.js';
import { mssqlStatements } from './native/mssql.js';
import { mysqlStatements } from './native/mysql.js';
import { postgresStatements } from './native/postgres.js';
import { REFUSALS, type Compile, type NativeStatements } from './native/types.js';
import type { SqlResourceOptions } from './options.js';
import { bindParams, namedParams, type ParamValue, type StatementName } from './params.js';
import { ColumnMap, truthy } from './records.js';

export type ListingKind = 'listAccounts' | 'listEntitlements' | 'listGrants';

/** A listing: the statement to stream and how a row becomes a record (undefined: not listed). */
export interface Listing {
  stmt: Stmt;
  map(row: Row): unknown;
}

/** Drops entitlement records whose id the resource's `entitlements` allow-list refuses. */
function allowedOnly(opts: SqlResourceOptions, map: (row: Row) => { id: string }): (row: Row) => unknown {
  return (row) => {
    const record = map(row);
    return opts.entitlements.allows(record.id) ? record : undefined;
  };
}

/**
 * How one identity model reads and changes principals. Changes run inside a
 * transaction the caller opened on `conn` and answer whether anything changed.
 */
export interface IdentityModel {
  listing(kind: ListingKind, conn: unknown): Promise<Listing>;
  grant(conn: unknown, p: GrantPayload): Promise<boolean>;
  revoke(conn: unknown, p: GrantPayload): Promise<boolean>;
  setAccountEnabled(conn: unknown, p: SetAccountEnabledPayload): Promise<boolean>;
  /** Extra reachability check beyond `select 1` (the queries model's `checkResource` statement). */
  check(conn: unknown): Promise<void>;
}

/** Compiles positional values; a statement without values is passed as is, so a `?` inside a quoted name stays literal. */
export function compiler(db: SqlDatabase): Compile {
  return (sql, values) => (values && values.length ? db.compilePositional(sql, values) : { sql, bindings: [] });
}

/** The native model's statements for this database (MySQL's depend on the server: MariaDB or MySQL). */
export async function nativeStatements(db: SqlDatabase, opts: SqlResourceOptions, conn: unknown): Promise<NativeStatements> {
  const compile = compiler(db);
  switch (opts.kind) {
    case 'postgres':
      return postgresStatements(compile);
    case 'mssql':
      return mssqlStatements(compile);
    case 'mysql':
      return mysqlStatements(compile, /mariadb/i.test(await db.version(conn)) ? 'mariadb' : 'mysql');
    default:
      throw new OutpostError('config_error', `resources.${opts.name}.model: ${opts.kind} has no native model`);
  }
}

/** The database's own principals; every change checks the current state first, inside the transaction. */
export function nativeModel(db: SqlDatabase, opts: SqlResourceOptions): IdentityModel {
  const first = async (conn: unknown, stmt: Stmt): Promise<Row | undefined> => (await db.exec(conn, stmt)).rows[0];
  // Payload values are never echoed: only names the database confirmed exist are quoted in a refusal.
  const mustBeGrantable = async (conn: unknown, s: NativeStatements, p: GrantPayload): Promise<void> => {
    opts.entitlements.check(p.entitlementId);
    if (!(await first(conn, s.accountState(p.accountId)))) throw new OutpostError('not_found', 'accountId names no account');
    const state = await first(conn, s.entitlementState(p.entitlementId));
    if (!state) throw new OutpostError('not_found', 'entitlementId names no role');
    const refused = state.refused === null || state.refused === undefined ? undefined : String(state.refused);
    if (refused !== undefined) {
      const why = REFUSALS[refused] ?? 'is not an entitlement under the rules of this database';
      throw new OutpostError('forbidden', `"${p.entitlementId}" ${why}, not an entitlement`);
    }
  };
  return {
    async listing(kind, conn) {
      const s = await nativeStatements(db, opts, conn);
      if (kind === 'listAccounts') return { stmt: s.listAccounts(), map: s.account };
      if (kind === 'listEntitlements') return { stmt: s.listEntitlements(), map: allowedOnly(opts, s.entitlement) };
      return { stmt: s.listGrants(), map: s.grantRow };
    },
    async grant(conn, p) {
      const s = await nativeStatements(db, opts, conn);
      await mustBeGrantable(conn, s, p);
      if (await first(conn, s.isMember(p.accountId, p.entitlementId))) return false;
      await db.exec(conn, s.grant(p.accountId, p.entitlementId));
      return true;
    },
    async revoke(conn, p) {
      const s = await nativeStatements(db, opts, conn);
      await mustBeGrantable(conn, s, p);
      if (!(await first(conn, s.isMember(p.accountId, p.entitlementId)))) return false;
      await db.exec(conn, s.revoke(p.accountId, p.entitlementId));
      return true;
    },
    async setAccountEnabled(conn, p) {
      const s = await nativeStatements(db, opts, conn);
      const state = await first(conn, s.accountState(p.accountId));
      if (!state) throw new OutpostError('not_found', 'accountId names no account');
      if (truthy(state.enabled) === p.enabled) return false;
      await db.exec(conn, s.setEnabled(p.accountId, state, p.enabled));
      return true;
    },
    async check() {},
  };
}

/**
 * The application's own tables: one configured statement per operation,
 * its `:accountId`, `:entitlementId` and `:enabled` bound by knex, and
 * `{changed}` from the affected-row count (write the statements so that a
 * repeat changes no row, e.g. `insert … on conflict do nothing`).
 */
export function queriesModel(db: SqlDatabase, opts: SqlResourceOptions): IdentityModel {
  const columns = new ColumnMap(opts.columns);
  const statement = (name: StatementName, available: Record<string, ParamValue>): Stmt => configuredStatement(db, opts, name, available);
  const change = async (conn: unknown, name: StatementName, params: Record<string, ParamValue>): Promise<boolean> =>
    (await db.exec(conn, statement(name, params))).affected > 0;
  return {
    async listing(kind) {
      const stmt = statement(kind, {});
      if (kind === 'listAccounts') return { stmt, map: (row) => columns.account(row) };
      if (kind === 'listEntitlements') return { stmt, map: allowedOnly(opts, (row) => columns.entitlement(row, opts.entitlementKind)) };
      return { stmt, map: (row) => columns.grant(row) };
    },
    grant: (conn, p) => {
      opts.entitlements.check(p.entitlementId);
      return change(conn, 'grant', { accountId: p.accountId, entitlementId: p.entitlementId });
    },
    revoke: (conn, p) => {
      opts.entitlements.check(p.entitlementId);
      return change(conn, 'revoke', { accountId: p.accountId, entitlementId: p.entitlementId });
    },
    setAccountEnabled: (conn, p) => change(conn, 'setAccountEnabled', { accountId: p.accountId, enabled: p.enabled }),
    async check(conn) {
      if (opts.statements.checkResource) await db.exec(conn, statement('checkResource', {}));
    },
  };
}

/**
 * The queries model's statement for `name`, compiled with the parameters it
 * uses out of `available` (a statement may use a subset, checked at load time).
 */
export function configuredStatement(db: SqlDatabase, opts: SqlResourceOptions, name: StatementName, available: Record<string, ParamValue>): Stmt {
  const sql = opts.statements[name];
  if (!sql) throw new OutpostError('invalid_request', `resource "${opts.name}" has no statement for ${name} (statements.${name})`);
  const used = namedParams(sql).values;
  const params = Object.fromEntries(Object.entries(available).filter(([k]) => used.includes(k)));
  return db.compile(sql, bindParams(`statements.${name}`, sql, params));
}
