import { Type } from '@sinclair/typebox';
import { compileResourceSchema, freezeOptions, IntIn, resolvePassword, SecretFields, Strict, Text, type SecretDeps } from '../../config/resource.js';
import { OutpostError } from '../../util/errors.js';
import { compileEntitlements, EntitlementsSchema, type EntitlementRules } from '../entitlements.js';
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

const SqlText = Type.String({ minLength: 1, pattern: '\\S', errorMessage: 'must be a non-empty SQL string' });
const ATTRIBUTE_NAME = '^[A-Za-z][A-Za-z0-9_]{0,63}$';

/**
 * One SQL resource entry of the agent config (DESIGN "Agent configuration"),
 * compiled once; parseOptions applies the defaults written here.
 */
export const SqlResourceSchema = Type.Object(
  {
    /** postgres | mysql (MySQL and MariaDB) | mssql | sqlite. */
    kind: Type.Union(
      SQL_KINDS.map((k) => Type.Literal(k)),
      { errorMessage: `must be one of ${SQL_KINDS.join(', ')}` },
    ),
    /** `native` (the database's own principals; default except for sqlite) or `queries` (the application's tables, through `statements`; sqlite's only model). */
    model: Type.Optional(Type.Union([Type.Literal('native'), Type.Literal('queries')])),
    /** `{host, port, database, user}` or `{url}` (`postgres://user@host:port/db`), or `{filename}` for sqlite; the password as for every kind. */
    connection: Type.Optional(
      Type.Object(
        {
          /** Default `127.0.0.1`. */
          host: Type.Optional(Text(255)),
          /** Default 5432 postgres, 3306 mysql, 1433 mssql. */
          port: Type.Optional(IntIn(1, 65_535)),
          database: Type.Optional(Text(255)),
          user: Type.Optional(Text(255)),
          /** A connection URL; its password, if any, counts as one of the password's sources. Never echoed in an error. */
          url: Type.Optional(Text(4096)),
          /** SQLite only: the database file (`:memory:` works for tests). */
          filename: Type.Optional(Text(4096)),
          ...SecretFields,
        },
        Strict,
      ),
    ),
    /** `true` or `{caFile, rejectUnauthorized = true, serverName}`; default off. Not for sqlite; mssql uses `encrypt`. */
    tls: Type.Optional(
      Type.Union([
        Type.Boolean(),
        Type.Object({ caFile: Type.Optional(Text(4096)), rejectUnauthorized: Type.Optional(Type.Boolean()), serverName: Type.Optional(Text(255)) }, Strict),
      ]),
    ),
    /** mssql only: TLS to SQL Server. Default true. */
    encrypt: Type.Optional(Type.Boolean()),
    pool: Type.Optional(
      Type.Object(
        {
          /** Connections. Default 4 (1 for sqlite). */
          max: Type.Optional(IntIn(1, 100)),
          /** Wait for a free connection. Default 30 000 ms. */
          acquireTimeoutMs: Type.Optional(IntIn(1, 600_000)),
        },
        Strict,
      ),
    ),
    /** TCP (and TLS) connect. Default 10 000 ms. */
    connectTimeoutMs: Type.Optional(IntIn(1, 600_000)),
    /**
     * Per statement (PG `statement_timeout`, MariaDB `max_statement_time`, MySQL `max_execution_time`
     * (SELECTs only), mssql `requestTimeout`). Default 300 000 ms; 0 = none. Not applicable to sqlite.
     * A PostgreSQL listing of a parameterless statement is one COPY, which it bounds whole.
     */
    statementTimeoutMs: Type.Optional(IntIn(0, 86_400_000)),
    /** Rows per output page when the payload gives none. Default 500. */
    pageSize: Type.Optional(IntIn(1, 10_000)),
    /** Named statements for `sql.query` (`:name` parameters). Default none. */
    queries: Type.Optional(Type.Record(Type.String(), SqlText)),
    /** The queries model's statement per operation (params.ts STATEMENT_PARAMS). */
    statements: Type.Optional(Type.Record(Type.String(), SqlText)),
    /** Record field → column name for the queries model. Default: the same name. */
    columns: Type.Optional(Type.Record(Type.String(), Text(128))),
    /** `kind` of entitlements when there is no `kind` column. Default `group`. */
    entitlementKind: Type.Optional(Type.Union([Type.Literal('group'), Type.Literal('role')])),
    /** How long an aborted statement may take to stop before its connection is destroyed. Default 5 000 ms. */
    cancelGraceMs: Type.Optional(IntIn(1, 600_000)),
    /**
     * `{include?: [glob], exclude?: [glob]}` narrowing what listEntitlements lists and grant/revoke accept
     * (lib/connectors/entitlements.ts). Default: everything the model offers. Case-insensitive for mssql.
     */
    entitlements: Type.Optional(EntitlementsSchema),
    /** The account lifecycle (see AccountsOptions). Default: nothing updatable. */
    accounts: Type.Optional(
      Type.Object(
        {
          updatable: Type.Optional(Type.Array(Type.String({ pattern: ATTRIBUTE_NAME }), { maxItems: 100 })),
          host: Type.Optional(Type.String({ minLength: 1, maxLength: 255, pattern: '^[^\\\\\\x00]+$', errorMessage: 'must be a host name or pattern of 1 to 255 characters, no backslash' })),
          scramIterations: Type.Optional(IntIn(DEFAULT_SCRAM_ITERATIONS, MAX_SCRAM_ITERATIONS)),
          deletions: Type.Optional(Type.Union([Type.Literal('listed'), Type.Literal('unsupported')])),
        },
        Strict,
      ),
    ),
  },
  Strict,
);

/** One SQL resource entry, validated, with every default applied (see SqlResourceSchema for each key's default). */
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

const compiled = compileResourceSchema(SqlResourceSchema);
const QUERY_NAME = /^[A-Za-z0-9_.-]{1,128}$/;
const URL_PROTOCOLS: Record<SqlKind, string[]> = {
  postgres: ['postgres:', 'postgresql:'],
  mysql: ['mysql:', 'mariadb:'],
  mssql: ['mssql:', 'sqlserver:'],
  sqlite: ['sqlite:', 'file:'],
};

/** Everything parseOptions needs besides the raw entry: the secret-file reader and the environment (passwordEnv). */
export type ParseDeps = SecretDeps;

/**
 * Validates one resource entry against the schema compiled once, applies the
 * defaults and returns frozen options; throws `config_error` naming
 * `resources.<name>.<key>`, never a secret.
 */
export function parseOptions(name: string, raw: Record<string, unknown>, deps: ParseDeps): Readonly<SqlResourceOptions> {
  const at = (key: string) => `resources.${name}.${key}`;
  const fail = (key: string, why: string): never => {
    throw new OutpostError('config_error', `${at(key)}: ${why}`);
  };
  const r = compiled.check(name, raw);
  const kind = r.kind;
  const model = r.model ?? (kind === 'sqlite' ? 'queries' : 'native');
  if (kind === 'sqlite' && model === 'native') fail('model', 'sqlite has no principals of its own; use model "queries"');

  const c = r.connection ?? {};
  const connection: SqlConnection = {
    host: c.host ?? '127.0.0.1',
    port: c.port,
    database: c.database,
    user: c.user,
    password: undefined,
    filename: c.filename,
  };
  let urlPassword: string | undefined;
  if (c.url) {
    let u: URL;
    try {
      u = new URL(c.url);
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
  // Read once: the drivers' pools take a string (LDAP re-reads its file per connection).
  const other = urlPassword !== undefined ? { what: 'a password in url', value: urlPassword } : undefined;
  connection.password = resolvePassword(at, 'connection.', c, deps, other ? { other } : {})?.();
  if (kind === 'sqlite' && !connection.filename) fail('connection.filename', 'is required for sqlite');
  if (kind !== 'sqlite' && connection.filename) fail('connection.filename', `applies to sqlite only, not ${kind}`);

  let tls: SqlTlsOptions | null = null;
  if (r.tls === true) tls = { caFile: undefined, rejectUnauthorized: true, serverName: undefined };
  else if (r.tls) tls = { caFile: r.tls.caFile, rejectUnauthorized: r.tls.rejectUnauthorized !== false, serverName: r.tls.serverName };
  if (tls && kind === 'sqlite') fail('tls', 'does not apply to sqlite');
  if (r.encrypt !== undefined && kind !== 'mssql') fail('encrypt', 'applies to mssql only (use tls)');

  const queries = r.queries ?? {};
  for (const [q, sql] of Object.entries(queries)) {
    if (!QUERY_NAME.test(q)) fail(`queries.${q}`, `query names must match ${QUERY_NAME.source}`);
    checkStatementParams(sql, null, (why) => fail(`queries.${q}`, why));
  }
  const accounts = parseAccounts(kind, r.accounts ?? {}, fail);
  const statements = (r.statements ?? {}) as Partial<Record<StatementName, string>>;
  for (const [op, sql] of Object.entries(statements)) {
    if (!Object.hasOwn(STATEMENT_PARAMS, op)) fail(`statements.${op}`, `unknown operation; one of ${Object.keys(STATEMENT_PARAMS).join(', ')}`);
    const allowed = [...STATEMENT_PARAMS[op as StatementName], ...(ATTRIBUTE_STATEMENTS.has(op) ? accounts.updatable : [])];
    checkStatementParams(sql, allowed, (why) => fail(`statements.${op}`, why));
  }
  if (model === 'native' && Object.keys(statements).length) fail('statements', 'apply to model "queries" only');
  if (model === 'queries' && !Object.keys(statements).length) fail('statements', 'model "queries" needs at least one statement');

  return freezeOptions({
    name,
    kind,
    model,
    connection,
    tls,
    encrypt: r.encrypt ?? true,
    pool: { max: r.pool?.max ?? (kind === 'sqlite' ? 1 : 4), acquireTimeoutMs: r.pool?.acquireTimeoutMs ?? 30_000 },
    connectTimeoutMs: r.connectTimeoutMs ?? 10_000,
    statementTimeoutMs: r.statementTimeoutMs ?? 300_000,
    pageSize: r.pageSize ?? 500,
    queries,
    statements,
    columns: r.columns ?? {},
    entitlementKind: r.entitlementKind ?? 'group',
    cancelGraceMs: r.cancelGraceMs ?? 5_000,
    entitlements: compileEntitlements(name, r.entitlements, { caseInsensitive: kind === 'mssql' }),
    accounts,
  });
}

function parseAccounts(
  kind: SqlKind,
  a: { updatable?: string[]; host?: string; scramIterations?: number; deletions?: 'listed' | 'unsupported' },
  fail: (key: string, why: string) => never,
): AccountsOptions {
  const fixed = new Set<string>([...STATEMENT_PARAMS.createAccount, ...STATEMENT_PARAMS.setPassword]);
  for (const [i, n] of (a.updatable ?? []).entries()) {
    // Never the password, the naming attribute or anything the other parameters already mean.
    if (fixed.has(n) || /password/i.test(n)) fail(`accounts.updatable.${i}`, 'names a field no update may set');
  }
  if (a.host !== undefined && kind !== 'mysql') fail('accounts.host', 'applies to mysql only');
  if (a.scramIterations !== undefined && kind !== 'postgres') fail('accounts.scramIterations', 'applies to postgres only');
  return {
    updatable: [...new Set(a.updatable ?? [])],
    host: a.host ?? '%',
    scramIterations: a.scramIterations ?? DEFAULT_SCRAM_ITERATIONS,
    deletions: a.deletions ?? 'unsupported',
  };
}
