import type { AccountRecord, CreateAccountPayload, CreateAccountResult, UpdateAccountPayload } from '../../protocol/operations.js';
import { OutpostError } from '../../util/errors.js';
import type { SqlDatabase } from './database.js';
import type { Row, Stmt } from './drivers/index.js';
import { mapSqlError } from './errors.js';
import { compiler, nativeStatements, type Listing } from './models.js';
import { targetRefusal, type AccountOptions, type AccountStatements, type AttributeValue } from './native/accounts.js';
import { mssqlAccountStatements } from './native/mssql-accounts.js';
import { mysqlAccountStatements } from './native/mysql-accounts.js';
import { postgresAccountStatements } from './native/postgres-accounts.js';
import type { SqlResourceOptions } from './options.js';

/**
 * The account lifecycle of one identity model (issue 12). Writes run inside
 * a transaction the caller opened on `conn` (MySQL commits DDL implicitly:
 * each write there is one statement, or a create followed by limits).
 */
export interface AccountLifecycle {
  getAccount(conn: unknown, accountId: string): Promise<AccountRecord>;
  createAccount(conn: unknown, p: CreateAccountPayload, password: string | undefined): Promise<CreateAccountResult>;
  updateAccount(conn: unknown, p: UpdateAccountPayload): Promise<boolean>;
  deleteAccount(conn: unknown, accountId: string): Promise<boolean>;
  setPassword(conn: unknown, accountId: string, password: string, mustChange: boolean): Promise<boolean>;
  /** listGrants {nested: true}: effective grants with `via`. */
  nestedGrants(conn: unknown): Promise<Listing>;
  /** The target rules for other writes (setAccountEnabled): `forbidden` for a refused account; absent is left to the write. */
  assertWritable(conn: unknown, accountId: string): Promise<void>;
}

/** The payload's attributes, limited to `accounts.updatable` ∩ what the model supports; each one value or null. */
export function allowedAttributes(opts: SqlResourceOptions, attributes: Readonly<Record<string, unknown>>, supported: readonly string[] | null): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const [name, value] of Object.entries(attributes)) {
    // The name is checked against the allow-list before it is quoted: a payload's name is echoed only when configured.
    if (!opts.accounts.updatable.includes(name)) {
      throw new OutpostError('forbidden', `attributes: only the attributes in resources.${opts.name}.accounts.updatable may be set`);
    }
    if (supported && !supported.includes(name)) {
      throw new OutpostError('invalid_request', `attributes.${name}: not an account attribute of ${opts.kind} (supported: ${supported.join(', ')})`);
    }
    if (Array.isArray(value)) throw new OutpostError('invalid_request', `attributes.${name}: SQL account attributes take one value, not a list`);
    out[name] = value === null || value === undefined ? null : String(value);
  }
  return out;
}

/** The native account statements of this database (MySQL's depend on the server: MariaDB or MySQL). */
export async function accountStatements(db: SqlDatabase, opts: SqlResourceOptions, conn: unknown): Promise<AccountStatements> {
  const compile = compiler(db);
  const a: AccountOptions = { host: opts.accounts.host, scramIterations: opts.accounts.scramIterations };
  switch (opts.kind) {
    case 'postgres':
      return postgresAccountStatements(compile, a);
    case 'mssql':
      return mssqlAccountStatements(compile);
    case 'mysql':
      return mysqlAccountStatements(compile, /mariadb/i.test(await db.version(conn)) ? 'mariadb' : 'mysql', a);
    default:
      throw new OutpostError('config_error', `resources.${opts.name}.model: ${opts.kind} has no native model`);
  }
}

/**
 * The database's own accounts. Every write reads the account's target state
 * first, in its transaction: absent → not_found (deleteAccount: `changed:
 * false`), refused (the agent's own account, privileged ones, see
 * TARGET_REFUSALS) → `forbidden` naming the rule before anything is written.
 */
export function nativeLifecycle(db: SqlDatabase, opts: SqlResourceOptions): AccountLifecycle {
  const first = async (conn: unknown, stmt: Stmt): Promise<Row | undefined> => (await db.exec(conn, stmt)).rows[0];
  const run = async (conn: unknown, stmts: readonly Stmt[]): Promise<void> => {
    for (const stmt of stmts) await db.exec(conn, stmt);
  };
  /** The target row of an account a job may write; `undefined` when absent. */
  const writable = async (conn: unknown, a: AccountStatements, accountId: string): Promise<Row | undefined> => {
    const state = await first(conn, a.targetState(accountId));
    if (state && state.refused !== null && state.refused !== undefined) throw targetRefusal(accountId, String(state.refused));
    return state;
  };
  const mustExist = (state: Row | undefined): Row => {
    if (!state) throw new OutpostError('not_found', 'accountId names no account');
    return state;
  };
  /** Only the attributes whose canonical value differs from the account's current one. */
  const changes = async (conn: unknown, a: AccountStatements, accountId: string, attrs: Record<string, AttributeValue>): Promise<Record<string, string>> => {
    const wanted = Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k, a.normalize(k, v)]));
    const current = (await first(conn, a.attributeState(accountId))) ?? {};
    return Object.fromEntries(Object.entries(wanted).filter(([k, v]) => String(current[k] ?? '') !== v));
  };
  return {
    async getAccount(conn, accountId) {
      const [s, a] = [await nativeStatements(db, opts, conn), await accountStatements(db, opts, conn)];
      return s.account(mustExist(await first(conn, a.getAccount(accountId))));
    },
    async createAccount(conn, p, password) {
      for (const field of ['email', 'givenName', 'surname', 'displayName'] as const) {
        if (p.account[field] !== undefined) throw new OutpostError('invalid_request', `account.${field}: ${opts.kind} accounts have no such field; leave it out`);
      }
      const a = await accountStatements(db, opts, conn);
      const attrs = allowedAttributes(opts, p.account.attributes ?? {}, a.attributes);
      const normalized = Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k, a.normalize(k, v)]));
      const accountId = a.accountIdOf(p.account.name);
      // Existing with the same identity: nothing is written (not even the password: that is setPassword's job, under its rules).
      if (await writable(conn, a, accountId)) return { changed: false, accountId };
      await run(conn, a.create(accountId, { enabled: p.account.enabled ?? true, password }));
      if (Object.keys(normalized).length) await run(conn, a.update(accountId, await changes(conn, a, accountId, attrs), { login: accountId }));
      return { changed: true, accountId };
    },
    async updateAccount(conn, p) {
      const a = await accountStatements(db, opts, conn);
      const attrs = allowedAttributes(opts, p.attributes, a.attributes);
      const state = mustExist(await writable(conn, a, p.accountId));
      const diff = await changes(conn, a, p.accountId, attrs);
      if (!Object.keys(diff).length) return false;
      await run(conn, a.update(p.accountId, diff, state));
      return true;
    },
    async deleteAccount(conn, accountId) {
      const a = await accountStatements(db, opts, conn);
      const state = await writable(conn, a, accountId);
      if (!state) return false;
      try {
        await run(conn, a.drop(accountId, state));
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (opts.kind === 'postgres' && code === '2BP01') {
          throw new OutpostError(
            'conflict',
            `"${accountId}" cannot be dropped: it owns objects or holds privileges (postgres 2BP01); reassign or drop them first (REASSIGN OWNED BY / DROP OWNED BY, in every database)`,
            { cause: err },
          );
        }
        throw mapSqlError(opts.kind, err);
      }
      return true;
    },
    async setPassword(conn, accountId, password, mustChange) {
      const a = await accountStatements(db, opts, conn);
      const state = mustExist(await writable(conn, a, accountId));
      await run(conn, a.setPassword(accountId, password, mustChange, state));
      return true;
    },
    async nestedGrants(conn) {
      const a = await accountStatements(db, opts, conn);
      return { stmt: a.listGrantsNested(), map: (row) => a.nestedGrantRow(row) };
    },
    async assertWritable(conn, accountId) {
      await writable(conn, await accountStatements(db, opts, conn), accountId);
    },
  };
}
