import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { OutpostError } from '../../util/errors.js';

/**
 * Password verifiers computed by the agent, so that a `setPassword` or
 * `createAccount` never sends the plaintext to the database: what the server
 * receives (and what a statement log such as PostgreSQL's
 * `log_statement = 'all'` or MariaDB's general log records) is a verifier
 * the server stores as is. No home-made primitives: PBKDF2, HMAC and the
 * hashes are node:crypto's.
 */

/** SCRAM iteration count when the resource sets none (PostgreSQL's own default, RFC 7677's minimum). */
export const DEFAULT_SCRAM_ITERATIONS = 4096;
/** Upper bound: node-postgres refuses to log in against more than 100 000 iterations by default. */
export const MAX_SCRAM_ITERATIONS = 100_000;

/**
 * SASLprep (RFC 4013) as PostgreSQL applies it to a SCRAM password, the same
 * subset node-postgres applies on login (pg/lib/crypto/sasl.js): pure ASCII is
 * used as is (PostgreSQL's fast path); otherwise non-ASCII spaces become
 * U+0020, "commonly mapped to nothing" characters are removed, then NFKC.
 */
export function saslPrep(password: string): string {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(password)) return password;
  const nonAsciiSpace = /[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/g;
  // eslint-disable-next-line no-misleading-character-class
  const mappedToNothing = /[\u00AD\u034F\u1806\u180B\u180C\u180D\u200C\u200D\u2060\uFE00-\uFE0F\uFEFF]/g;
  return password.replace(nonAsciiSpace, ' ').replace(mappedToNothing, '').normalize('NFKC');
}

/** The shape of a verifier scramVerifier makes: only base64 characters, `$` and `:` (checked before it is quoted). */
export const SCRAM_VERIFIER = /^SCRAM-SHA-256\$[1-9][0-9]{3,5}:[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}:[A-Za-z0-9+/]+={0,2}$/;

/**
 * A PostgreSQL SCRAM-SHA-256 verifier (RFC 5802 / RFC 7677), in the form
 * `pg_authid.rolpassword` stores: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
 * SaltedPassword = PBKDF2-HMAC-SHA-256(SASLprep(password), salt, iterations, 32);
 * StoredKey = SHA-256(HMAC(SaltedPassword, "Client Key")); ServerKey = HMAC(SaltedPassword, "Server Key").
 * The salt is 16 random bytes unless given (tests use a fixed one).
 */
export function scramVerifier(password: string, opts: { iterations?: number; salt?: Buffer } = {}): string {
  const iterations = opts.iterations ?? DEFAULT_SCRAM_ITERATIONS;
  if (!Number.isInteger(iterations) || iterations < DEFAULT_SCRAM_ITERATIONS || iterations > MAX_SCRAM_ITERATIONS) {
    throw new OutpostError('config_error', `SCRAM iterations must be an integer in [${DEFAULT_SCRAM_ITERATIONS}, ${MAX_SCRAM_ITERATIONS}]`);
  }
  const salt = opts.salt ?? randomBytes(16);
  const salted = pbkdf2Sync(Buffer.from(saslPrep(password), 'utf8'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/** The shape of a mysql_native_password hash: `*` and 40 upper-case hex digits. */
export const MYSQL_NATIVE_HASH = /^\*[0-9A-F]{40}$/;

/**
 * The `mysql_native_password` hash MariaDB and MySQL store: `*` + HEX(SHA1(SHA1(password))),
 * upper case, of the password's UTF-8 bytes (what a client sends for a utf8mb4 connection).
 */
export function mysqlNativeHash(password: string): string {
  const once = createHash('sha1').update(Buffer.from(password, 'utf8')).digest();
  return '*' + createHash('sha1').update(once).digest('hex').toUpperCase();
}

/** The shape of a SQL Server `PASSWORD = 0x… HASHED` value: version 0x0200, 4-byte salt, SHA-512. */
export const MSSQL_HASHED = /^0x0200[0-9A-F]{136}$/;

/**
 * SQL Server's password hash (2012 and later) as `CREATE/ALTER LOGIN … WITH
 * PASSWORD = 0x… HASHED` takes it: 0x0200 + salt (4 bytes) + SHA-512(UTF-16LE(password) + salt).
 */
export function mssqlHashedPassword(password: string, salt: Buffer = randomBytes(4)): string {
  const digest = createHash('sha512').update(Buffer.concat([Buffer.from(password, 'utf16le'), salt])).digest();
  return '0x0200' + Buffer.concat([salt, digest]).toString('hex').toUpperCase();
}
