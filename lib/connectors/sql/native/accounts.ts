import type { GrantRecord } from '../../../protocol/operations.js';
import { OutpostError } from '../../../util/errors.js';
import type { Row, Stmt } from '../drivers/index.js';

/** What the account statements of a dialect need from the resource config. */
export interface AccountOptions {
  /** MySQL/MariaDB: host part of the accounts createAccount makes. Default `%`. */
  host: string;
  /** PostgreSQL: PBKDF2 iterations of the SCRAM verifier. Default 4096. */
  scramIterations: number;
}

/** An attribute value after validation: one string or null (clear). */
export type AttributeValue = string | null;

/**
 * The account lifecycle of the native model on one engine. Builders are
 * pure (no connection) so they can be checked offline; principal names are
 * quoted identifiers, passwords never appear: only a verifier computed by the
 * agent (verifiers.ts), checked against its expected shape before it is
 * quoted as a literal (DDL takes no bound parameters).
 */
export interface AccountStatements {
  /** The listAccounts row of one account (same columns, mapped by NativeStatements.account); none when absent. */
  getAccount(accountId: string): Stmt;
  /**
   * One row when the account exists, with `refused`: null when a job may
   * change it, else a key of TARGET_REFUSALS (SQL Server: also `login`).
   * Read inside the write's transaction; the row is passed to the writes.
   */
  targetState(accountId: string): Stmt;
  /** The account id createAccount makes for `name` (MySQL: `'name'@'<accounts.host>'`); refuses names the engine cannot hold. */
  accountIdOf(name: string): string;
  create(accountId: string, opts: { enabled: boolean; password: string | undefined }): Stmt[];
  drop(accountId: string, state: Row): Stmt[];
  setPassword(accountId: string, password: string, mustChange: boolean, state: Row): Stmt[];
  /** The attributes updateAccount may set on this engine (further narrowed by `accounts.updatable`). */
  readonly attributes: readonly string[];
  /**
   * A value in the canonical string form attributeState answers (null = the
   * engine's default, e.g. no limit); refuses a malformed value, naming the attribute only.
   */
  normalize(attribute: string, value: AttributeValue): string;
  /** One row with a column per attribute (named as the attribute), values in canonical form. */
  attributeState(accountId: string): Stmt;
  /** Statements setting canonical values (only those that differ from attributeState). */
  update(accountId: string, attributes: Readonly<Record<string, string>>, state: Row): Stmt[];
  /** Effective grants through nested roles: rows with account, entitlement and `via` (null for a direct grant). */
  listGrantsNested(): Stmt;
  nestedGrantRow(row: Row): GrantRecord;
}

/**
 * Why an account may not be written (deleteAccount, setPassword, updateAccount,
 * an existing account in createAccount), by the `refused` key targetState answers.
 */
export const TARGET_REFUSALS: Readonly<Record<string, string>> = {
  predefined: 'is a predefined role',
  superuser: 'is a superuser role',
  createrole: 'is a role with CREATEROLE',
  bypassrls: 'is a role with BYPASSRLS',
  replication: 'is a role with REPLICATION',
  agent: "is the agent's own account or a role it inherits",
  inherits: 'is a member of a privileged role (it could act as that role)',
  privileged: 'has global or administrative privileges, or privileges on the mysql schema',
  system: 'is an account the database server itself owns',
  fixed: 'is a member of a fixed database or server role',
};

/** The refusal of a write to an existing account whose name the database confirmed. */
export function targetRefusal(accountId: string, refused: string): OutpostError {
  const why = TARGET_REFUSALS[refused] ?? 'is not an account jobs may change';
  return new OutpostError('forbidden', `"${accountId}" ${why}: no job may change it (rule: never a privileged account or the agent's own)`);
}

/** An integer attribute value within bounds, or the refusal naming the attribute (never the value). */
export function intAttribute(name: string, value: AttributeValue, min: number, max: number): number {
  if (value === null || !/^-?[0-9]{1,10}$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new OutpostError('invalid_request', `attributes.${name}: must be an integer in [${min}, ${max}]`);
  }
  return Number(value);
}

/** A statement with no bound values (DDL): the text is built only from quoted names and checked literals. */
export const ddl = (sql: string): Stmt => ({ sql, bindings: [] });
