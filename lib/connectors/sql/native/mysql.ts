import { formatMysqlAccount, mysqlString, parseMysqlAccount, quoteIdent } from '../ident.js';
import { truthy } from '../records.js';
import { MARIADB_CLASSIFIED, MYSQL_CLASSIFIED } from './mysql-entitlements.js';
import type { Compile, NativeStatements } from './types.js';

// `binary`: MariaDB's mysql.user is a view whose computed columns (and json_value) carry the
// server's collation, which does not mix with the connection's in '='; names compare exactly anyway.
/** Accounts the server itself owns; listing or changing them is never an identity team's business. */
export const SYSTEM_USERS = `('mariadb.sys', 'mysql.sys', 'mysql.session', 'mysql.infoschema', '')`;
const account = (id: string): string => {
  const a = parseMysqlAccount(id);
  return `${mysqlString(a.user)}@${mysqlString(a.host)}`;
};

/** The account rows of listAccounts (getAccount adds a condition on u.User and u.Host). */
export function mysqlAccounts(flavor: 'mariadb' | 'mysql'): string {
  return flavor === 'mariadb'
    ? `select u.User as user, u.Host as host, u.plugin as plugin,
              coalesce(binary json_value(p.Priv, '$.account_locked'), '') not in ('1', 'true') as enabled
         from mysql.user u left join mysql.global_priv p on p.User = u.User and p.Host = u.Host
        where binary u.is_role = 'N' and binary u.User not in ${SYSTEM_USERS}`
    : `select u.User as user, u.Host as host, u.plugin as plugin, u.account_locked <> 'Y' as enabled from mysql.user u
        where u.User not in ${SYSTEM_USERS}`;
}

/**
 * MySQL and MariaDB principals. Account ids are `'user'@'host'` (see
 * ident.ts). MariaDB: accounts are mysql.user rows with is_role = 'N',
 * `enabled` is "not ACCOUNT LOCK" (mysql.global_priv), entitlements are roles
 * (is_role = 'Y', id = the role name), grants are mysql.roles_mapping.
 * MySQL 8: roles are accounts too; entitlements are the accounts made by
 * CREATE ROLE (locked, expired, no password) or already granted
 * (mysql.role_edges), with ids in the same `'role'@'host'` form. Either way
 * only roles that pass the classification of mysql-entitlements.ts.
 */
export function mysqlStatements(compile: Compile, flavor: 'mariadb' | 'mysql'): NativeStatements {
  const maria = flavor === 'mariadb';
  const role = (id: string): string => (maria ? quoteIdent('mysql', id) : account(id));
  return {
    listAccounts: () => compile(`${mysqlAccounts(flavor)} order by u.User, u.Host`),
    account: (row) => ({
      id: formatMysqlAccount(String(row.user), String(row.host)),
      uid: null,
      name: String(row.user),
      email: null,
      enabled: truthy(row.enabled),
      attributes: { user: String(row.user), host: String(row.host), plugin: row.plugin === null || row.plugin === undefined ? null : String(row.plugin) },
    }),
    listEntitlements: () =>
      compile(
        maria
          ? `${MARIADB_CLASSIFIED} select c.id from classified c where c.refused is null order by c.id`
          : `${MYSQL_CLASSIFIED} select c.user, c.host from classified c where c.refused is null order by c.user, c.host`,
      ),
    entitlement: (row) => {
      const id = maria ? String(row.id) : formatMysqlAccount(String(row.user), String(row.host));
      return { id, uid: null, name: maria ? id : String(row.user), kind: 'role', description: null };
    },
    listGrants: () =>
      compile(
        maria
          ? `select m.User as user, m.Host as host, m.Role as role from mysql.roles_mapping m
              where m.Host <> '' order by m.User, m.Host, m.Role`
          : `select TO_USER as user, TO_HOST as host, FROM_USER as role_user, FROM_HOST as role_host from mysql.role_edges
              order by TO_USER, TO_HOST, FROM_USER`,
      ),
    grantRow: (row) => ({
      accountId: formatMysqlAccount(String(row.user), String(row.host)),
      entitlementId: maria ? String(row.role) : formatMysqlAccount(String(row.role_user), String(row.role_host)),
    }),
    accountState: (id) => {
      const a = parseMysqlAccount(id);
      return maria
        ? compile(
            `select coalesce(binary json_value(p.Priv, '$.account_locked'), '') not in ('1', 'true') as enabled from mysql.global_priv p
              join mysql.user u on u.User = p.User and u.Host = p.Host where binary p.User = ? and binary p.Host = ? and binary u.is_role = 'N'`,
            [a.user, a.host],
          )
        : compile(`select account_locked <> 'Y' as enabled from mysql.user where User = ? and Host = ?`, [a.user, a.host]);
    },
    entitlementState: (id) => {
      // A role and a user may share a name (different hosts): the role row answers first.
      if (maria) return compile(`${MARIADB_CLASSIFIED} select c.refused from classified c where binary c.id = ? order by c.is_role desc limit 1`, [id]);
      const r = parseMysqlAccount(id);
      return compile(`${MYSQL_CLASSIFIED} select c.refused from classified c where c.user = ? and c.host = ?`, [r.user, r.host]);
    },
    isMember: (id, roleId) => {
      const a = parseMysqlAccount(id);
      if (maria) return compile('select 1 as found from mysql.roles_mapping where User = ? and Host = ? and Role = ?', [a.user, a.host, roleId]);
      const r = parseMysqlAccount(roleId);
      return compile(
        'select 1 as found from mysql.role_edges where TO_USER = ? and TO_HOST = ? and FROM_USER = ? and FROM_HOST = ?',
        [a.user, a.host, r.user, r.host],
      );
    },
    // GRANT/REVOKE/ALTER USER take no placeholders: the role is a quoted identifier, the account two quoted literals.
    grant: (id, roleId) => ({ sql: `grant ${role(roleId)} to ${account(id)}`, bindings: [] }),
    revoke: (id, roleId) => ({ sql: `revoke ${role(roleId)} from ${account(id)}`, bindings: [] }),
    setEnabled: (id, _state, enabled) => ({ sql: `alter user ${account(id)} account ${enabled ? 'unlock' : 'lock'}`, bindings: [] }),
  };
}
