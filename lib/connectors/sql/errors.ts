import { OutpostError, type ErrorCode } from '../../util/errors.js';
import type { SqlKind } from './options.js';

/** What a driver error means for the job: its wire code and whether another attempt may succeed. */
export interface Mapped {
  code: ErrorCode;
  retryable: boolean;
}
const r = (code: ErrorCode): Mapped => ({ code, retryable: true });
const f = (code: ErrorCode): Mapped => ({ code, retryable: false });

/** PostgreSQL SQLSTATE codes (exact), then by class (first two characters). */
export const PG_CODES: Record<string, Mapped> = {
  '57P01': r('unavailable'), // admin shutdown
  '57P02': r('unavailable'), // crash shutdown
  '57P03': r('unavailable'), // cannot connect now (starting up)
  '40P01': r('conflict'), // deadlock
  '40001': r('conflict'), // serialization failure
  '55P03': r('busy'), // lock not available / lock_timeout
  '57014': r('timeout'), // statement_timeout (a cancel we asked for is reported as the abort instead)
  '53300': r('busy'), // too many connections
  '42501': f('permission_denied'),
  '28P01': f('invalid_credentials'),
  '28000': f('invalid_credentials'),
  '42601': f('invalid_request'), // syntax
  '42704': f('not_found'), // undefined object (role)
  '3D000': f('not_found'), // database does not exist
  '0LP01': f('invalid_request'), // invalid grant operation (e.g. role into itself)
  '0P000': f('invalid_request'), // invalid role specification
  '2BP01': f('conflict'), // dependent objects still exist (DROP ROLE of a role that owns objects or holds privileges)
  '42710': f('conflict'), // duplicate object (CREATE ROLE of an existing role)
  '42939': f('forbidden'), // reserved name (pg_*)
};
const PG_CLASSES: Record<string, Mapped> = {
  '08': r('unavailable'), '53': r('busy'), '40': r('conflict'), '42': f('invalid_request'), '22': f('invalid_request'),
  '23': f('conflict'), '28': f('invalid_credentials'), '57': r('unavailable'), '58': r('unavailable'),
};

/** MySQL/MariaDB error numbers. */
export const MYSQL_CODES: Record<number, Mapped> = {
  1213: r('conflict'), // deadlock
  1205: r('busy'), // lock wait timeout
  1040: r('busy'), // too many connections
  1203: r('busy'), // max_user_connections
  1044: f('permission_denied'), // access denied to database
  1045: f('invalid_credentials'), // access denied (password)
  1698: f('invalid_credentials'), // access denied for user (MariaDB unix_socket/auth plugin refused the login)
  1142: f('permission_denied'), 1143: f('permission_denied'), 1227: f('permission_denied'), 1370: f('permission_denied'),
  1064: f('invalid_request'), // syntax
  1054: f('invalid_request'), 1146: f('invalid_request'),
  1396: f('not_found'), // operation failed for a user/role that does not exist
  1959: f('not_found'), // invalid role specification (MariaDB)
  3523: f('not_found'), // unknown authorization ID (MySQL)
  1049: f('not_found'), // unknown database
  1317: r('aborted'), // query interrupted (KILL QUERY)
  1470: f('invalid_request'), // user name too long
  1372: f('invalid_request'), // password hash has the wrong format
  1820: f('invalid_credentials'), // the account's password expired: it must be changed first (mustChange)
  1862: f('invalid_credentials'), // password expired (login refused outside sandbox mode)
  1969: r('timeout'), // MariaDB max_statement_time exceeded
  3024: r('timeout'), // MySQL max_execution_time exceeded
  2006: r('unavailable'), 2013: r('unavailable'), 1053: r('unavailable'), 1927: r('unavailable'),
};

/** SQL Server error numbers (tedious `EREQUEST` carries `number`). */
export const MSSQL_NUMBERS: Record<number, Mapped> = {
  1205: r('conflict'), // deadlock victim
  1222: r('busy'), // lock request timeout
  18456: f('invalid_credentials'), // login failed
  229: f('permission_denied'), 230: f('permission_denied'), 262: f('permission_denied'), 300: f('permission_denied'), 15247: f('permission_denied'),
  102: f('invalid_request'), 156: f('invalid_request'), 207: f('invalid_request'), 208: f('invalid_request'),
  15151: f('not_found'), // cannot find the user/role/login
  15007: f('not_found'), // not a valid login
  15023: f('conflict'), // user, group or role already exists
  15025: f('conflict'), // the server principal already exists
  15138: f('conflict'), // the database principal owns a schema and cannot be dropped
  15118: f('invalid_request'), // password validation failed (policy)
  15116: f('invalid_request'), 15115: f('invalid_request'), // password too short / too long for the policy
  4060: f('not_found'), // cannot open database
};

/** Driver and Node codes that are not database error numbers. */
export const DRIVER_CODES: Record<string, Mapped> = {
  ECONNREFUSED: r('unavailable'), ECONNRESET: r('unavailable'), EHOSTUNREACH: r('unavailable'), ENETUNREACH: r('unavailable'),
  EPIPE: r('unavailable'), ENOTFOUND: r('unavailable'), EAI_AGAIN: r('unavailable'), ETIMEDOUT: r('timeout'),
  PROTOCOL_CONNECTION_LOST: r('unavailable'), PROTOCOL_SEQUENCE_TIMEOUT: r('timeout'),
  // tedious
  ESOCKET: r('unavailable'), ETIMEOUT: r('timeout'), ELOGIN: f('invalid_credentials'), ECANCEL: r('aborted'), ECLOSE: r('unavailable'),
  // TLS
  DEPTH_ZERO_SELF_SIGNED_CERT: f('tls_error'), SELF_SIGNED_CERT_IN_CHAIN: f('tls_error'), UNABLE_TO_VERIFY_LEAF_SIGNATURE: f('tls_error'),
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: f('tls_error'), CERT_HAS_EXPIRED: f('tls_error'), ERR_TLS_CERT_ALTNAME_INVALID: f('tls_error'),
  HANDSHAKE_NO_SSL_SUPPORT: f('tls_error'), HANDSHAKE_SSL_ERROR: f('tls_error'),
  // better-sqlite3
  SQLITE_BUSY: r('busy'), SQLITE_LOCKED: r('busy'), SQLITE_ERROR: f('invalid_request'), SQLITE_RANGE: f('invalid_request'),
  SQLITE_MISMATCH: f('invalid_request'), SQLITE_READONLY: f('permission_denied'), SQLITE_PERM: f('permission_denied'),
  SQLITE_AUTH: f('permission_denied'), SQLITE_CANTOPEN: f('unavailable'), SQLITE_NOTADB: f('invalid_request'),
};

interface DriverError {
  code?: unknown;
  errno?: unknown;
  number?: unknown;
  sqlState?: unknown;
  name?: unknown;
  message?: unknown;
  errors?: unknown;
}

/** Looks up one driver error in the table of its dialect; undefined when nothing matches. */
export function classify(kind: SqlKind, err: DriverError): Mapped | undefined {
  const code = typeof err.code === 'string' ? err.code : undefined;
  if (kind === 'postgres' && code && /^[0-9A-Z]{5}$/.test(code)) return PG_CODES[code] ?? PG_CLASSES[code.slice(0, 2)];
  if (kind === 'mysql' && typeof err.errno === 'number' && MYSQL_CODES[err.errno]) return MYSQL_CODES[err.errno];
  if (kind === 'mssql' && typeof err.number === 'number' && MSSQL_NUMBERS[err.number]) return MSSQL_NUMBERS[err.number];
  if (code?.startsWith('SQLITE_CONSTRAINT')) return f('conflict');
  if (code && DRIVER_CODES[code]) return DRIVER_CODES[code];
  if (err.name === 'KnexTimeoutError') return r('busy'); // pool exhausted: acquireTimeoutMs passed
  const message = typeof err.message === 'string' ? err.message : '';
  if (/does not support SSL|SSL connection is required|self[- ]signed certificate|certificate/i.test(message)) return f('tls_error');
  // node-postgres reports a socket closed under it with no code.
  if (/^Connection terminated/i.test(message) || /connection (was )?(lost|closed)/i.test(message)) return r('unavailable');
  if (kind === 'mysql' && typeof err.sqlState === 'string' && err.sqlState.startsWith('08')) return r('unavailable');
  // AggregateError (pg connecting to localhost tries ::1 and 127.0.0.1): classify by the first inner error.
  if (Array.isArray(err.errors) && err.errors[0]) return classify(kind, err.errors[0] as DriverError);
  return undefined;
}

/** What a driver-level (not server) failure says, by its Outpost code: fixed text, never the driver's own. */
const DRIVER_TEXT: Partial<Record<ErrorCode, string>> = {
  unavailable: 'the database is unreachable or closed the connection',
  timeout: 'the database did not answer in time',
  busy: 'no connection free within acquireTimeoutMs, or the database is busy',
  tls_error: 'TLS handshake with the database failed (check tls.caFile / tls.serverName)',
  invalid_credentials: 'the database refused the login',
  permission_denied: 'permission denied',
  invalid_request: 'the driver refused the statement',
  aborted: 'the statement was cancelled',
  conflict: 'conflict',
  not_found: 'not found',
};

/** A code or class name that can be shown (`ECONNREFUSED`, `28P01`, `KnexTimeoutError`). */
function safeId(v: unknown): string | undefined {
  if (typeof v === 'number' && Number.isInteger(v)) return String(v);
  return typeof v === 'string' && /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(v) ? v : undefined;
}

/**
 * The server's own text when the error is one the database server sent (a
 * SQLSTATE, a MySQL errno with its SQL state, a SQL Server error number, a
 * SQLite result code): it names users and objects, never passwords. Anything
 * else came from the driver or the socket and may quote the connection
 * string, so it is not echoed.
 */
function serverText(kind: SqlKind, e: DriverError): string | undefined {
  const fromServer =
    (kind === 'postgres' && typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) ||
    (kind === 'mysql' && typeof e.errno === 'number' && typeof e.sqlState === 'string') ||
    (kind === 'mssql' && typeof e.number === 'number') ||
    (kind === 'sqlite' && typeof e.code === 'string' && e.code.startsWith('SQLITE_'));
  if (!fromServer || typeof e.message !== 'string') return undefined;
  // First line only, bounded: a server quoting a 1 MB statement must not make a 1 MB error.
  const end = e.message.indexOf('\n');
  return (end >= 0 ? e.message.slice(0, end) : e.message).slice(0, 300);
}

/**
 * Turns any error of a driver into an OutpostError with a safe message: the
 * dialect and its code, then the server's own text for server errors, or a
 * fixed text for driver and socket errors. Never rewritten by value (the
 * message reaches the job's error as it is).
 */
export function mapSqlError(kind: SqlKind, err: unknown): OutpostError {
  if (err instanceof OutpostError) return err;
  const e = (err ?? {}) as DriverError;
  const inner = Array.isArray(e.errors) && e.errors[0] && typeof e.errors[0] === 'object' ? (e.errors[0] as DriverError) : undefined;
  const mapped = classify(kind, e) ?? f('internal');
  const id = safeId(e.code) ?? safeId(e.errno) ?? safeId(e.number) ?? safeId(inner?.code) ?? safeId(e.name);
  const text = serverText(kind, e) ?? DRIVER_TEXT[mapped.code] ?? 'unexpected driver error';
  return new OutpostError(mapped.code, `${kind}${id ? ` ${id}` : ''}: ${text}`, { retryable: mapped.retryable, cause: err });
}

/**
 * The same mapping without the server's text, for statements that carry
 * payload values (the queries model's account statements bind a password,
 * an email …, and a server may quote a value it refused, e.g. PostgreSQL
 * 22P02 `invalid input syntax … "<value>"`): the code and `what` only.
 */
export function mapSqlErrorWithheld(kind: SqlKind, err: unknown, what: string): OutpostError {
  if (err instanceof OutpostError) return err;
  const mapped = mapSqlError(kind, err);
  const e = (err ?? {}) as DriverError;
  const id = safeId(e.code) ?? safeId(e.errno) ?? safeId(e.number);
  const text = DRIVER_TEXT[mapped.code] ?? 'unexpected driver error';
  return new OutpostError(mapped.code, `${kind}${id ? ` ${id}` : ''}: ${what} failed: ${text} (server text withheld: the statement carries payload values)`, {
    retryable: mapped.retryable,
    cause: err,
  });
}
