import type { AccountListingResult } from '../../protocol/operations.js';
import { OutpostError } from '../../util/errors.js';
import { decodeCursor, encodeCursor, statementFingerprint } from './cursor.js';
import type { SqlDatabase } from './database.js';
import type { Stmt } from './drivers/index.js';
import { mapSqlErrorWithheld } from './errors.js';
import { allowedAttributes, type AccountLifecycle } from './lifecycle.js';
import { configuredStatement, type Listing } from './models.js';
import type { SqlResourceOptions } from './options.js';
import { namedParams, type ParamValue, type StatementName } from './params.js';
import { ColumnMap, jsonValue, truthy } from './records.js';

/** A listing of accounts and what its result says about deltas. */
export interface AccountListing {
  listing: Listing;
  result: Omit<AccountListingResult, 'records'>;
}

/**
 * The application's own account tables (queries model): one configured
 * statement per operation, values bound by knex. An operation whose
 * statement is not configured is `unknown_type` ("does not serve"). Write
 * statements report `{changed}` by affected rows, so write them idempotent
 * (`insert … on conflict do nothing`, `delete … where`). Errors of statements
 * that carry payload values keep their code but not the server's text.
 */
export function queriesLifecycle(db: SqlDatabase, opts: SqlResourceOptions): AccountLifecycle & {
  accountListing(conn: unknown, since: string | undefined): Promise<AccountListing>;
} {
  const columns = new ColumnMap(opts.columns);
  const serves = (name: StatementName, op: string): void => {
    if (!opts.statements[name]) throw new OutpostError('unknown_type', `resource "${opts.name}" does not serve ${op} (no statements.${name})`);
  };
  const write = async (conn: unknown, name: StatementName, params: Record<string, ParamValue>): Promise<number> => {
    serves(name, name);
    const stmt = configuredStatement(db, opts, name, params);
    try {
      return (await db.exec(conn, stmt)).affected;
    } catch (err) {
      throw mapSqlErrorWithheld(opts.kind, err, `statements.${name}`);
    }
  };
  const attributeParams = (attrs: Record<string, string | null>): Record<string, ParamValue> =>
    Object.fromEntries(opts.accounts.updatable.map((n) => [n, Object.hasOwn(attrs, n) ? (attrs[n] as string | null) : null]));
  const fingerprint = statementFingerprint(opts.statements.accountsCursor, opts.statements.listAccountsSince);
  const full = (): Listing => {
    serves('listAccounts', 'listAccounts');
    return { stmt: configuredStatement(db, opts, 'listAccounts', {}), map: (row) => columns.account(row) };
  };
  return {
    async getAccount(conn, accountId) {
      serves('getAccount', 'getAccount');
      const row = (await db.exec(conn, configuredStatement(db, opts, 'getAccount', { accountId }))).rows[0];
      if (!row) throw new OutpostError('not_found', 'accountId names no account');
      return columns.account(row);
    },
    async createAccount(conn, p, password) {
      serves('createAccount', 'createAccount');
      if (password !== undefined && !namedParams(opts.statements.createAccount as string).values.includes('password')) {
        throw new OutpostError('invalid_request', `password: statements.createAccount of resource "${opts.name}" takes no :password; leave it out and use setPassword`);
      }
      const a = p.account;
      const attrs = allowedAttributes(opts, a.attributes ?? {}, null);
      const params: Record<string, ParamValue> = {
        accountId: a.name, name: a.name, email: a.email ?? null, givenName: a.givenName ?? null, surname: a.surname ?? null,
        displayName: a.displayName ?? null, enabled: a.enabled ?? true, password: password ?? null, ...attributeParams(attrs),
      };
      return { changed: (await write(conn, 'createAccount', params)) > 0, accountId: a.name };
    },
    async updateAccount(conn, p) {
      serves('updateAccount', 'updateAccount');
      const attrs = allowedAttributes(opts, p.attributes, null);
      return (await write(conn, 'updateAccount', { accountId: p.accountId, ...attributeParams(attrs) })) > 0;
    },
    async deleteAccount(conn, accountId) {
      return (await write(conn, 'deleteAccount', { accountId })) > 0;
    },
    async setPassword(conn, accountId, password, mustChange) {
      if ((await write(conn, 'setPassword', { accountId, password, mustChange })) === 0) throw new OutpostError('not_found', 'accountId names no account');
      return true;
    },
    async nestedGrants() {
      serves('listGrantsNested', 'listGrants {nested: true}');
      const via = columns.col('via');
      return {
        stmt: configuredStatement(db, opts, 'listGrantsNested', {}),
        map: (row) => {
          const g = columns.grant(row);
          const v = row[via];
          return v === null || v === undefined || String(v) === g.entitlementId ? g : { ...g, via: String(jsonValue(v)) };
        },
      };
    },
    // The application's accounts: its statements decide (the agent's database login is none of them).
    async assertWritable() {},
    async accountListing(conn, since) {
      const { accountsCursor, listAccountsSince } = opts.statements;
      if (!accountsCursor || !listAccountsSince) {
        return { listing: full(), result: since === undefined ? {} : { delta: false, deletions: 'unsupported' } };
      }
      const previous = since === undefined ? undefined : decodeCursor(since);
      // Read before the listing: a change made while it runs is listed again next time, never missed.
      const row = (await db.exec(conn, configuredStatement(db, opts, 'accountsCursor', {}))).rows[0];
      const value = row ? Object.values(row)[0] : undefined;
      if (value === null || value === undefined) throw new OutpostError('invalid_request', 'statements.accountsCursor: answered no value');
      const cursor = encodeCursor({ resource: opts.name, fingerprint, watermark: String(jsonValue(value)) });
      if (!previous || previous.resource !== opts.name || previous.fingerprint !== fingerprint) {
        // No cursor, or one from another resource or from other statements: everything, and say so.
        return { listing: full(), result: { cursor, delta: false, deletions: opts.accounts.deletions } };
      }
      const deleted = columns.col('deleted');
      const stmt: Stmt = configuredStatement(db, opts, 'listAccountsSince', { since: previous.watermark });
      return {
        listing: { stmt, map: (r) => (deleted in r && truthy(r[deleted]) ? { id: columns.account(r).id, deleted: true } : columns.account(r)) },
        result: { cursor, delta: true, deletions: opts.accounts.deletions },
      };
    },
  };
}
