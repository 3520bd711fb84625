import { OutpostError } from '../../util/errors.js';
import type { SqlKind } from './options.js';

/**
 * Quotes one principal name as an identifier of `kind`, doubling the quote
 * character inside it: the SQL-standard escaping every engine honours.
 * We do not use knex's `??` for principal names: it splits on dots and on
 * " as " (`john.doe` → `"john"."doe"`), treats `*` as a wildcard, and its
 * mssql form strips brackets instead of escaping them.
 */
export function quoteIdent(kind: SqlKind, name: string): string {
  if (!name || name.includes('\0')) throw new OutpostError('invalid_request', 'a principal name must be non-empty and contain no NUL character');
  switch (kind) {
    case 'mysql':
      return '`' + name.replace(/`/g, '``') + '`';
    case 'mssql':
      return '[' + name.replace(/]/g, ']]') + ']';
    default:
      return '"' + name.replace(/"/g, '""') + '"';
  }
}

/** A MySQL/MariaDB account: the pair that `'user'@'host'` names. */
export interface MysqlAccount {
  user: string;
  host: string;
}

/**
 * Account ids on MySQL/MariaDB are `'user'@'host'`, quotes doubled inside
 * (`'o''brien'@'%'`), as SHOW GRANTS prints them. Also accepted: `user@host`
 * (split at the last `@`) and a bare `user`, meaning host `%`.
 */
export function parseMysqlAccount(id: string): MysqlAccount {
  const quoted = /^'((?:[^']|'')*)'@'((?:[^']|'')*)'$/.exec(id);
  const [, user, host] = quoted ?? [];
  if (user !== undefined && host !== undefined) return { user: user.replace(/''/g, "'"), host: host.replace(/''/g, "'") };
  if (id.startsWith("'")) throw new OutpostError('invalid_request', `account id must look like 'user'@'host'`);
  const at = id.lastIndexOf('@');
  if (at < 0) return { user: id, host: '%' };
  return { user: id.slice(0, at), host: id.slice(at + 1) };
}

/** The account id of a MySQL/MariaDB user and host. */
export function formatMysqlAccount(user: string, host: string): string {
  return `'${user.replace(/'/g, "''")}'@'${host.replace(/'/g, "''")}'`;
}

/**
 * A MySQL string literal for a user or host name in GRANT/REVOKE/ALTER USER,
 * which take no placeholders (not even server-side prepared ones). Quotes are
 * doubled, which is right whether or not NO_BACKSLASH_ESCAPES is set; a
 * backslash would mean different things in the two modes, so it is refused.
 */
export function mysqlString(value: string): string {
  if (value.includes('\\') || value.includes('\0')) {
    throw new OutpostError('invalid_request', 'MySQL user and host names with a backslash or NUL character are not supported');
  }
  return `'${value.replace(/'/g, "''")}'`;
}
