import { randomBytes } from 'node:crypto';
import { OutpostError } from '../../../util/errors.js';
import { formatMysqlAccount, mysqlString, parseMysqlAccount } from '../ident.js';
import { MYSQL_NATIVE_HASH, mysqlNativeHash } from '../verifiers.js';
import { ddl, intAttribute, type AccountOptions, type AccountStatements } from './accounts.js';
import { MARIADB_PRIVILEGED, ME, MYSQL_PRIVILEGED } from './mysql-entitlements.js';
import { mysqlAccounts, SYSTEM_USERS } from './mysql.js';
import type { Compile } from './types.js';

const account = (id: string): string => {
  const a = parseMysqlAccount(id);
  return `${mysqlString(a.user)}@${mysqlString(a.host)}`;
};

/**
 * Which accounts a job may write, one row per mysql.user account:
 * `system` (mariadb.sys …), `agent` (the agent's own account, current_user()),
 * `privileged` (any global privilege — a non-zero `access` in
 * mysql.global_priv on MariaDB, a `*_priv` column or a dynamic privilege on
 * MySQL —, GRANT OPTION on a database or table, any privilege on the
 * `mysql` schema), `inherits` (holds, directly or through other roles, a role
 * with such privileges). Roles are not accounts here.
 */
const MARIADB_TARGETS = `with recursive ${ME},
  ${MARIADB_PRIVILEGED},
  powerful(role) as (
    select role from privileged
    union
    select m.User from mysql.roles_mapping m join powerful w on binary m.Role = binary w.role where m.Host = ''
  ),
  target as (
    select u.User as user, u.Host as host,
           case when binary u.User in ${SYSTEM_USERS} then 'system'
                when binary u.User = binary me.u and binary u.Host = binary me.h then 'agent'
                when coalesce(json_value(p.Priv, '$.access'), 0) <> 0
                  or exists (select 1 from mysql.db d where binary d.User = binary u.User and binary d.Host = binary u.Host
                                and ('mysql' like d.Db or d.Grant_priv = 'Y'))
                  or exists (select 1 from mysql.tables_priv t where binary t.User = binary u.User and binary t.Host = binary u.Host
                                and (t.Db = 'mysql' or find_in_set('Grant', t.Table_priv) > 0)) then 'privileged'
                when exists (select 1 from mysql.roles_mapping m join powerful w on binary m.Role = binary w.role
                              where binary m.User = binary u.User and binary m.Host = binary u.Host) then 'inherits'
           end as refused
      from mysql.user u cross join me left join mysql.global_priv p on p.User = u.User and p.Host = u.Host
     where binary u.is_role = 'N'
  )`;

/** MySQL 8 (compiled offline only): the same rules over the `*_priv` columns, global_grants and role_edges. */
const MYSQL_TARGETS = `with recursive ${ME},
  ${MYSQL_PRIVILEGED},
  powerful(u, h) as (
    select u, h from privileged
    union
    select e.TO_USER, e.TO_HOST from mysql.role_edges e join powerful w on e.FROM_USER = w.u and e.FROM_HOST = w.h
  ),
  target as (
    select u.User as user, u.Host as host,
           case when u.User in ${SYSTEM_USERS} then 'system'
                when u.User = me.u and u.Host = me.h then 'agent'
                when exists (select 1 from privileged x where x.u = u.User and x.h = u.Host) then 'privileged'
                when exists (select 1 from powerful x where x.u = u.User and x.h = u.Host) then 'inherits'
           end as refused
      from mysql.user u cross join me
  )`;

/** MariaDB keeps user names up to 128 characters, MySQL 8 up to 32; longer ones are refused, not truncated. */
const MAX_USER_CHARS = { mariadb: 128, mysql: 32 } as const;
/** updateAccount attributes → the resource limit of ALTER USER … WITH they set (0 = unlimited, also for null). */
const LIMITS: Record<string, string> = {
  maxUserConnections: 'max_user_connections',
  maxConnectionsPerHour: 'max_connections_per_hour',
  maxQueriesPerHour: 'max_queries_per_hour',
  maxUpdatesPerHour: 'max_updates_per_hour',
};

/**
 * MariaDB and MySQL account lifecycle. Passwords are sent as the
 * `mysql_native_password` hash computed here (`IDENTIFIED VIA
 * mysql_native_password USING '*…'` on MariaDB, `IDENTIFIED WITH
 * mysql_native_password AS '*…'` on MySQL 8), never as `IDENTIFIED BY
 * '<plaintext>'`, which MariaDB writes into its general log; the account's
 * plugin becomes mysql_native_password. An account made without a password
 * gets the hash of a random one nobody knows (a MariaDB account with no
 * password would accept an empty one). `enabled: false` is ACCOUNT LOCK;
 * `mustChange` is PASSWORD EXPIRE. Attributes: the per-account resource limits.
 */
export function mysqlAccountStatements(compile: Compile, flavor: 'mariadb' | 'mysql', opts: AccountOptions): AccountStatements {
  const maria = flavor === 'mariadb';
  const identified = (plain: string): string => {
    const hash = mysqlNativeHash(plain);
    if (!MYSQL_NATIVE_HASH.test(hash)) throw new OutpostError('internal', 'the password hash has an unexpected form');
    return maria ? `identified via mysql_native_password using '${hash}'` : `identified with mysql_native_password as '${hash}'`;
  };
  return {
    getAccount(id) {
      const a = parseMysqlAccount(id);
      return compile(`${mysqlAccounts(flavor)} and binary u.User = ? and binary u.Host = ?`, [a.user, a.host]);
    },
    targetState(id) {
      const a = parseMysqlAccount(id);
      return compile(`${maria ? MARIADB_TARGETS : MYSQL_TARGETS} select t.refused from target t where binary t.user = ? and binary t.host = ?`, [a.user, a.host]);
    },
    accountIdOf(name) {
      if ([...name].length > MAX_USER_CHARS[flavor]) throw new OutpostError('invalid_request', `account.name: ${flavor} user names are at most ${MAX_USER_CHARS[flavor]} characters`);
      mysqlString(name); // refuses a backslash or NUL before anything is written
      return formatMysqlAccount(name, opts.host);
    },
    create: (id, o) => [
      ddl(`create user ${account(id)} ${identified(o.password ?? randomBytes(24).toString('base64'))}${o.enabled ? '' : ' account lock'}`),
    ],
    drop: (id) => [ddl(`drop user ${account(id)}`)],
    setPassword: (id, plain, mustChange) => [
      ddl(`alter user ${account(id)} ${identified(plain)}`),
      ...(mustChange ? [ddl(`alter user ${account(id)} password expire`)] : []),
    ],
    attributes: Object.keys(LIMITS),
    normalize: (name, value) => String(intAttribute(name, value ?? '0', 0, 2_147_483_647)),
    attributeState(id) {
      const a = parseMysqlAccount(id);
      return compile(
        `select cast(max_user_connections as char) as maxUserConnections, cast(max_connections as char) as maxConnectionsPerHour,
                cast(max_questions as char) as maxQueriesPerHour, cast(max_updates as char) as maxUpdatesPerHour
           from mysql.user where binary User = ? and binary Host = ?`,
        [a.user, a.host],
      );
    },
    update(id, attrs) {
      const limits = Object.entries(attrs).map(([k, v]) => `${LIMITS[k] as string} ${intAttribute(k, v, 0, 2_147_483_647)}`);
      return limits.length ? [ddl(`alter user ${account(id)} with ${limits.join(' ')}`)] : [];
    },
    // UNION (distinct) over (account, role, via): a finite set, so role cycles end the recursion.
    listGrantsNested: () =>
      compile(
        maria
          ? `with recursive eff(user, host, role, via) as (
               select m.User, m.Host, m.Role, m.Role from mysql.roles_mapping m where m.Host <> ''
               union
               select e.user, e.host, m.Role, e.via from eff e join mysql.roles_mapping m on binary m.User = binary e.role and m.Host = ''
             )
             select e.user, e.host, e.role, case when binary e.via = binary e.role then null else e.via end as via
               from eff e order by e.user, e.host, e.role, via`
          : `with recursive eff(u, h, ru, rh, vu, vh) as (
               select TO_USER, TO_HOST, FROM_USER, FROM_HOST, FROM_USER, FROM_HOST from mysql.role_edges
               union
               select e.u, e.h, r.FROM_USER, r.FROM_HOST, e.vu, e.vh from eff e join mysql.role_edges r on r.TO_USER = e.ru and r.TO_HOST = e.rh
             )
             select u as user, h as host, ru as role_user, rh as role_host,
                    case when vu = ru and vh = rh then null else vu end as via_user, vh as via_host
               from eff order by u, h, ru, rh`,
      ),
    nestedGrantRow(row) {
      const entitlementId = maria ? String(row.role) : formatMysqlAccount(String(row.role_user), String(row.role_host));
      const viaName = maria ? row.via : row.via_user;
      const via = viaName === null || viaName === undefined ? undefined : maria ? String(viaName) : formatMysqlAccount(String(viaName), String(row.via_host));
      return { accountId: formatMysqlAccount(String(row.user), String(row.host)), entitlementId, ...(via === undefined ? {} : { via }) };
    },
  };
}
