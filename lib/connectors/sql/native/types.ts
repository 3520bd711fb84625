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
  /**
   * One row when a principal of that name exists, with a `refused` column:
   * null when it is an entitlement (what listEntitlements lists), else the
   * key of the rule it breaks (see REFUSALS). listEntitlements and this
   * statement share one classification per dialect, read in the
   * transaction of the grant or revoke.
   */
  entitlementState(entitlementId: string): Stmt;
  /** One row when the account holds the entitlement. */
  isMember(accountId: string, entitlementId: string): Stmt;
  grant(accountId: string, entitlementId: string): Stmt;
  revoke(accountId: string, entitlementId: string): Stmt;
  /** `state` is the row accountState returned (SQL Server needs the login name from it). */
  setEnabled(accountId: string, state: Row, enabled: boolean): Stmt;
}

/** Compiles SQL with positional `?` values into the driver's native form. */
export type Compile = (sql: string, values?: readonly unknown[]) => Stmt;

/**
 * Why a principal is not an entitlement, by the `refused` key the
 * classification statements answer. Each becomes a non-retryable `forbidden`.
 */
export const REFUSALS: Readonly<Record<string, string>> = {
  predefined: 'is a predefined role',
  login: 'is a login role',
  superuser: 'is a superuser role',
  createrole: 'is a role with CREATEROLE',
  bypassrls: 'is a role with BYPASSRLS',
  replication: 'is a role with REPLICATION',
  agent: "is the agent's own role or one it inherits",
  inherits: 'is a member of a role that is not an entitlement (it could SET ROLE into it)',
  user: 'is a user account, not a role',
  privileged: 'has global or administrative privileges (such as SUPER, GRANT OPTION, CREATE USER, FILE, PROCESS, SHUTDOWN) or privileges on the mysql schema',
  fixed: 'is a fixed database role',
};
