import type { AccountRecord, EntitlementRecord, GrantRecord } from '../../../protocol/operations.js';
import type { Row, Stmt } from '../drivers/index.js';

/**
 * The statements of the native model on one database engine: principal
 * names are quoted identifiers, every other value is a bound parameter.
 * Builders are pure (no connection), so they can be checked offline.
 */
export interface NativeStatements {
  listAccounts(): Stmt;
  account(row: Row): AccountRecord;
  listEntitlements(): Stmt;
  entitlement(row: Row): EntitlementRecord;
  listGrants(): Stmt;
  grantRow(row: Row): GrantRecord;
  /** One row with an `enabled` column when the account exists, none otherwise. */
  accountState(accountId: string): Stmt;
  /** One row when the entitlement exists. */
  entitlementExists(entitlementId: string): Stmt;
  /** One row when the account holds the entitlement. */
  isMember(accountId: string, entitlementId: string): Stmt;
  grant(accountId: string, entitlementId: string): Stmt;
  revoke(accountId: string, entitlementId: string): Stmt;
  /** `state` is the row accountState returned (SQL Server needs the login name from it). */
  setEnabled(accountId: string, state: Row, enabled: boolean): Stmt;
}

/** Compiles SQL with positional `?` values into the driver's native form. */
export type Compile = (sql: string, values?: readonly unknown[]) => Stmt;
