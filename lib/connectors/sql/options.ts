import { OutpostError } from '../../util/errors.js';
import { registerSecret } from '../../util/redact.js';
import { compileEntitlements, type EntitlementRules } from '../entitlements.js';
import { ATTRIBUTE_STATEMENTS, checkStatementParams, STATEMENT_PARAMS, type StatementName } from './params.js';
import { DEFAULT_SCRAM_ITERATIONS, MAX_SCRAM_ITERATIONS } from './verifiers.js';

/** The resource kinds this connector serves. */
export const SQL_KINDS = ['postgres', 'mysql', 'mssql', 'sqlite'] as const;
export type SqlKind = (typeof SQL_KINDS)[number];

/** Connection settings after resolution; the password is already read (and registered for redaction). */
export interface SqlConnection {
  host: string;
  /** Default: 5432 postgres, 3306 mysql, 1433 mssql. */
  port: number | undefined;
  database: string | undefined;
  user: string | undefined;
  password: string | undefined;
  /** SQLite only: the database file (`:memory:` works for tests). */
  filename: string | undefined;
}

/** TLS towards the database. `null` = plain TCP (postgres/mysql); SQL Server uses `encrypt`. */
export interface SqlTlsOptions {
  /** Extra CA (PEM file) to trust. Default: the system CAs only. */
  caFile: string | undefined;
  /** Verify the server certificate. Default true; false is for tests only. */
  rejectUnauthorized: boolean;
  /** Name checked in the certificate when it differs from `host`. */
  serverName: string | undefined;
}

/**
 * One SQL resource entry of the agent config (DESIGN "Agent configuration"),
 * validated. Keys and defaults:
 *
 * - `kind`: postgres | mysql (MySQL and MariaDB) | mssql | sqlite.
 * - `model`: `native` (the database's own principals; default except for sqlite)
 *   or `queries` (the application's tables, through `statements`; sqlite's only model).
 * - `connection`: `{host, port, database, user, passwordFile | passwordEnv | password}`
 *   or `{url}` (`postgres://user@host:port/db`), or `{filename}` for sqlite.
 * - `tls`: `true` or `{caFile, rejectUnauthorized = true, serverName}`; default off.
 * - `encrypt` (mssql): TLS to SQL Server. Default true.
 * - `pool.max`: connections. Default 4 (1 for sqlite). `pool.acquireTimeoutMs`: default 30 000.
 * - `connectTimeoutMs`: default 10 000.
 * - `statementTimeoutMs`: per statement (PG `statement_timeout`, MariaDB
 *   `max_statement_time`, MySQL `max_execution_time` (SELECTs only), mssql
 *   `requestTimeout`). Default 300 000; 0 = none. Not applicable to sqlite. A
 *   PostgreSQL listing of a parameterless statement is one COPY, which it bounds whole.
 * - `pageSize`: rows per output page when the payload gives none. Default 500.
 * - `queries`: named statements for `sql.query` (`:name` parameters).
 * - `statements`: the queries model's statement per operation.
 * - `columns`: record field → column name for the queries model (default: same name).
 * - `entitlementKind`: `kind` of entitlements when no `kind` column. Default `group`.
 * - `cancelGraceMs`: how long an aborted statement may take to stop before its
 *   connection is destroyed. Default 5 000.
 * - `entitlements`: `{include?: [glob], exclude?: [glob]}` narrowing what
 *   listEntitlements lists and grant/revoke accept (lib/connectors/entitlements.ts).
 *   Default: everything the model offers. Case-insensitive for mssql.
 * - `accounts`: the account lifecycle (see AccountsOptions). Default: nothing updatable.
 */
export interface SqlResourceOptions {
  name: string;
  kind: SqlKind;
  model: 'native' | 'queries';
  connection: SqlConnection;
  tls: SqlTlsOptions | null;
  encrypt: boolean;
  pool: { max: number; acquireTimeoutMs: number };
  connectTimeoutMs: number;
  statementTimeoutMs: number;
  pageSize: number;
  queries: Record<string, string>;
  statements: Partial<Record<StatementName, string>>;
  columns: Record<string, string>;
  entitlementKind: 'group' | 'role';
  cancelGraceMs: number;
  entitlements: EntitlementRules;
  accounts: AccountsOptions;
}

/**
 * `accounts` of a SQL resource (createAccount, updateAccount, setPassword, delta listings):
 * - `updatable`: attribute names updateAccount (and createAccount's `attributes`) may set.
 *   Default `[]` (none). Native model: a subset of the dialect's (PostgreSQL
 *   connectionLimit, validUntil; MariaDB/MySQL maxUserConnections,
 *   maxConnectionsPerHour, maxQueriesPerHour, maxUpdatesPerHour; SQL Server
 *   defaultSchema). Queries model: `:name` parameters of those statements.
 * - `host` (mysql): host part of created accounts. Default `%`.
 * - `scramIterations` (postgres): PBKDF2 iterations of SCRAM verifiers. Default 4096, at most 100 000.
 * - `deletions` (queries model): whether `statements.listAccountsSince` returns
 *   deleted accounts (rows whose `deleted` column is true): `listed` or
 *   `unsupported`. Default `unsupported`.
 */
export interface AccountsOptions {
  updatable: readonly string[];
  host: string;
  scramIterations: number;
  deletions: 'listed' | 'unsupported';
}
const ACCOUNT_KEYS = new Set(['updatable', 'host', 'scramIterations', 'deletions']);
const ATTRIBUTE_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

const TOP_KEYS = new Set([
  'kind', 'model', 'connection', 'tls', 'encrypt', 'pool', 'connectTimeoutMs', 'statementTimeoutMs',
  'pageSize', 'queries', 'statements', 'columns', 'entitlementKind', 'cancelGraceMs', 'entitlements', 'accounts',
]);
const CONNECTION_KEYS = new Set(['host', 'port', 'database', 'user', 'password', 'passwordFile', 'passwordEnv', 'url', 'filename']);
const QUERY_NAME = /^[A-Za-z0-9_.-]{1,128}$/;
const URL_PROTOCOLS: Record<SqlKind, string[]> = {
  postgres: ['postgres:', 'postgresql:'],
  mysql: ['mysql:', 'mariadb:'],
  mssql: ['mssql:', 'sqlserver:'],
  sqlite: ['sqlite:', 'file:'],
};

/** Everything parseOptions needs besides the raw entry. */
export interface ParseDeps {
  readSecret(path: string): string;
  env: Readonly<Record<string, string | undefined>>;
}

/** Validates one resource entry; throws `config_error` naming `resources.<name>.<key>`, never a secret. */
export function parseOptions(name: string, raw: Record<string, unknown>, deps: ParseDeps): SqlResourceOptions {
  const fail = (key: string, why: string): never => {
    throw new OutpostError('config_error', `resources.${name}.${key}: ${why}`);
  };
  for (const key of Object.keys(raw)) if (!TOP_KEYS.has(key)) fail(key, 'unknown key');
  const kind = raw.kind as SqlKind;
  if (!SQL_KINDS.includes(kind)) fail('kind', `must be one of ${SQL_KINDS.join(', ')}`);
  const model = raw.model ?? (kind === 'sqlite' ? 'queries' : 'native');
  if (model !== 'native' && model !== 'queries') fail('model', 'must be "native" or "queries"');
  if (kind === 'sqlite' && model === 'native') fail('model', 'sqlite has no principals of its own; use model "queries"');

  const int = (key: string, value: unknown, dflt: number, min: number, max: number): number => {
    if (value === undefined || value === null) return dflt;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) fail(key, `must be an integer in [${min}, ${max}]`);
    return value as number;
  };
  const str = (key: string, value: unknown): string | undefined => {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string' || !value) fail(key, 'must be a non-empty string');
    return value as string;
  };
  const obj = (key: string, value: unknown): Record<string, unknown> => {
    if (value === undefined || value === null) return {};
    if (typeof value !== 'object' || Array.isArray(value)) fail(key, 'must be an object');
    return value as Record<string, unknown>;
  };

  const c = obj('connection', raw.connection);
  for (const key of Object.keys(c)) if (!CONNECTION_KEYS.has(key)) fail(`connection.${key}`, 'unknown key');
  const connection: SqlConnection = {
    host: str('connection.host', c.host) ?? '127.0.0.1',
    port: c.port === undefined ? undefined : int('connection.port', c.port, 0, 1, 65_535),
    database: str('connection.database', c.database),
    user: str('connection.user', c.user),
    password: undefined,
    filename: str('connection.filename', c.filename),
  };
  const url = str('connection.url', c.url);
  let urlPassword: string | undefined;
  if (url) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      // The URL may carry a password: never echo it.
      return fail('connection.url', 'is not a valid URL');
    }
    if (!URL_PROTOCOLS[kind].includes(u.protocol)) fail('connection.url', `must be a ${URL_PROTOCOLS[kind].map((p) => `${p}//`).join(' or ')} URL`);
    if (kind === 'sqlite') {
      connection.filename = decodeURIComponent(u.pathname);
    } else {
      if (u.hostname) connection.host = u.hostname.replace(/^\[|\]$/g, '');
      if (u.port) connection.port = Number(u.port);
      if (u.username) connection.user = decodeURIComponent(u.username);
      if (u.pathname.length > 1) connection.database = decodeURIComponent(u.pathname.slice(1));
      if (u.password) urlPassword = decodeURIComponent(u.password);
    }
  }
  const sources = [c.password, c.passwordFile, c.passwordEnv, urlPassword].filter((v) => v !== undefined && v !== null);
  if (sources.length > 1) fail('connection', 'set at most one of password, passwordFile, passwordEnv or a password in url');
  if (urlPassword) {
    registerSecret(urlPassword);
    connection.password = urlPassword;
  } else if (c.password !== undefined && c.password !== null) {
    if (typeof c.password !== 'string' || !c.password) fail('connection.password', 'must be a non-empty string');
    registerSecret(c.password as string);
    connection.password = c.password as string;
  } else if (c.passwordFile !== undefined && c.passwordFile !== null) {
    connection.password = deps.readSecret(str('connection.passwordFile', c.passwordFile) as string);
  } else if (c.passwordEnv !== undefined && c.passwordEnv !== null) {
    const envName = str('connection.passwordEnv', c.passwordEnv) as string;
    const value = deps.env[envName];
    if (!value) fail('connection.passwordEnv', `environment variable ${envName} is not set`);
    registerSecret(value);
    connection.password = value;
  }
  if (kind === 'sqlite' && !connection.filename) fail('connection.filename', 'is required for sqlite');
  if (kind !== 'sqlite' && connection.filename) fail('connection.filename', `applies to sqlite only, not ${kind}`);

  let tls: SqlTlsOptions | null = null;
  if (raw.tls === true) tls = { caFile: undefined, rejectUnauthorized: true, serverName: undefined };
  else if (raw.tls !== undefined && raw.tls !== false && raw.tls !== null) {
    const t = obj('tls', raw.tls);
    for (const key of Object.keys(t)) if (!['caFile', 'rejectUnauthorized', 'serverName'].includes(key)) fail(`tls.${key}`, 'unknown key');
    if (t.rejectUnauthorized !== undefined && typeof t.rejectUnauthorized !== 'boolean') fail('tls.rejectUnauthorized', 'must be a boolean');
    tls = { caFile: str('tls.caFile', t.caFile), rejectUnauthorized: t.rejectUnauthorized !== false, serverName: str('tls.serverName', t.serverName) };
  }
  if (tls && kind === 'sqlite') fail('tls', 'does not apply to sqlite');
  if (raw.encrypt !== undefined && typeof raw.encrypt !== 'boolean') fail('encrypt', 'must be a boolean');
  if (raw.encrypt !== undefined && kind !== 'mssql') fail('encrypt', 'applies to mssql only (use tls)');

  const p = obj('pool', raw.pool);
  for (const key of Object.keys(p)) if (!['max', 'acquireTimeoutMs'].includes(key)) fail(`pool.${key}`, 'unknown key');

  const queries = stringMap('queries', obj('queries', raw.queries), fail);
  for (const [q, sql] of Object.entries(queries)) {
    if (!QUERY_NAME.test(q)) fail(`queries.${q}`, `query names must match ${QUERY_NAME.source}`);
    checkStatementParams(sql, null, (why) => fail(`queries.${q}`, why));
  }
  const accounts = parseAccounts(kind, obj('accounts', raw.accounts), fail, int);
  const statements = stringMap('statements', obj('statements', raw.statements), fail) as Partial<Record<StatementName, string>>;
  for (const [op, sql] of Object.entries(statements)) {
    if (!Object.hasOwn(STATEMENT_PARAMS, op)) fail(`statements.${op}`, `unknown operation; one of ${Object.keys(STATEMENT_PARAMS).join(', ')}`);
    const allowed = [...STATEMENT_PARAMS[op as StatementName], ...(ATTRIBUTE_STATEMENTS.has(op) ? accounts.updatable : [])];
    checkStatementParams(sql, allowed, (why) => fail(`statements.${op}`, why));
  }
  if (model === 'native' && Object.keys(statements).length) fail('statements', 'apply to model "queries" only');
  if (model === 'queries' && !Object.keys(statements).length) fail('statements', 'model "queries" needs at least one statement');
  const columns = stringMap('columns', obj('columns', raw.columns), fail);
  const entitlementKind = raw.entitlementKind ?? 'group';
  if (entitlementKind !== 'group' && entitlementKind !== 'role') fail('entitlementKind', 'must be "group" or "role"');

  return {
    name,
    kind,
    model: model as 'native' | 'queries',
    connection,
    tls,
    encrypt: (raw.encrypt as boolean | undefined) ?? true,
    pool: { max: int('pool.max', p.max, kind === 'sqlite' ? 1 : 4, 1, 100), acquireTimeoutMs: int('pool.acquireTimeoutMs', p.acquireTimeoutMs, 30_000, 1, 600_000) },
    connectTimeoutMs: int('connectTimeoutMs', raw.connectTimeoutMs, 10_000, 1, 600_000),
    statementTimeoutMs: int('statementTimeoutMs', raw.statementTimeoutMs, 300_000, 0, 86_400_000),
    pageSize: int('pageSize', raw.pageSize, 500, 1, 10_000),
    queries,
    statements,
    columns,
    entitlementKind: entitlementKind as 'group' | 'role',
    cancelGraceMs: int('cancelGraceMs', raw.cancelGraceMs, 5_000, 1, 600_000),
    entitlements: compileEntitlements(name, raw.entitlements, { caseInsensitive: kind === 'mssql' }),
    accounts,
  };
}

function parseAccounts(
  kind: SqlKind,
  a: Record<string, unknown>,
  fail: (key: string, why: string) => never,
  int: (key: string, value: unknown, dflt: number, min: number, max: number) => number,
): AccountsOptions {
  for (const key of Object.keys(a)) if (!ACCOUNT_KEYS.has(key)) fail(`accounts.${key}`, 'unknown key');
  const updatable = a.updatable ?? [];
  if (!Array.isArray(updatable) || updatable.length > 100) fail('accounts.updatable', 'must be an array of at most 100 attribute names');
  const fixed = new Set<string>([...STATEMENT_PARAMS.createAccount, ...STATEMENT_PARAMS.setPassword]);
  for (const [i, n] of (updatable as unknown[]).entries()) {
    if (typeof n !== 'string' || !ATTRIBUTE_NAME.test(n)) fail(`accounts.updatable.${i}`, `must match ${ATTRIBUTE_NAME.source}`);
    // Never the password, the naming attribute or anything the other parameters already mean.
    if (fixed.has(n as string) || /password/i.test(n as string)) fail(`accounts.updatable.${i}`, 'names a field no update may set');
  }
  if (a.host !== undefined && kind !== 'mysql') fail('accounts.host', 'applies to mysql only');
  const host = a.host ?? '%';
  if (typeof host !== 'string' || !host || host.length > 255 || /[\\\0]/.test(host)) fail('accounts.host', 'must be a host name or pattern of 1 to 255 characters, no backslash');
  if (a.scramIterations !== undefined && kind !== 'postgres') fail('accounts.scramIterations', 'applies to postgres only');
  const deletions = a.deletions ?? 'unsupported';
  if (deletions !== 'listed' && deletions !== 'unsupported') fail('accounts.deletions', 'must be "listed" or "unsupported"');
  return {
    updatable: [...new Set(updatable as string[])],
    host: host as string,
    scramIterations: int('accounts.scramIterations', a.scramIterations, DEFAULT_SCRAM_ITERATIONS, DEFAULT_SCRAM_ITERATIONS, MAX_SCRAM_ITERATIONS),
    deletions,
  };
}

function stringMap(key: string, value: Record<string, unknown>, fail: (key: string, why: string) => never): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string' || !v.trim()) fail(`${key}.${k}`, 'must be a non-empty SQL string');
    out[k] = v as string;
  }
  return out;
}
