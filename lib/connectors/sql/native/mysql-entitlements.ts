/**
 * What an entitlement is on MariaDB and MySQL 8: one classification per
 * flavor, a CTE named `classified` with one row per mysql.user row
 * (`id`, `is_role`, `refused`), used by listEntitlements and, inside the
 * grant's or revoke's transaction, by entitlementState. `refused` is null
 * for an entitlement, else a key of REFUSALS (types.ts):
 *
 * - `user`: a user account, not a role (the agent's own user included);
 * - `agent`: a role the agent's account holds as a member (granted without
 *   ADMIN OPTION), its default role, and the roles those hold in turn.
 *   A role held only WITH ADMIN OPTION is how MariaDB and MySQL delegate the
 *   right to grant it (CREATE ROLE grants it so to its creator), so that
 *   alone does not make it the agent's: it still has to pass the rules below;
 * - `privileged`: any global privilege (SUPER, GRANT OPTION, CREATE USER,
 *   FILE, PROCESS, SHUTDOWN, ALL PRIVILEGES … — MariaDB: a non-zero
 *   `access` in mysql.global_priv; MySQL: a `*_priv` column of mysql.user or
 *   a dynamic privilege in mysql.global_grants), GRANT OPTION on a database
 *   or table, or any privilege on the `mysql` schema (the grant tables);
 * - `inherits`: a role granted (directly or not) any role refused above.
 *
 * Names compare as `binary`: MariaDB's mysql.user is a view whose columns
 * carry the server's collation, which does not mix with the tables' in `=`.
 */

export const ME = `me as (select substring_index(current_user(), '@', -1) as h,
                left(current_user(), char_length(current_user()) - char_length(substring_index(current_user(), '@', -1)) - 1) as u)`;

/**
 * The one definition of a privileged role on MariaDB, shared by what may be granted (entitlements) and what
 * may be written (accounts): any global privilege, GRANT OPTION on a database or table, or any privilege on
 * the `mysql` schema.
 */
export const MARIADB_PRIVILEGED = `privileged(role) as (
    select p.User from mysql.global_priv p where p.Host = '' and coalesce(json_value(p.Priv, '$.access'), 0) <> 0
    union select d.User from mysql.db d where d.Host = '' and ('mysql' like d.Db or d.Grant_priv = 'Y')
    union select t.User from mysql.tables_priv t where t.Host = '' and (t.Db = 'mysql' or find_in_set('Grant', t.Table_priv) > 0)
  )`;

/** MariaDB: roles are mysql.user rows with is_role = 'Y', ids are bare role names; grants live in mysql.roles_mapping. */
export const MARIADB_CLASSIFIED = `with recursive
  ${ME},
  agent(role) as (
    select m.Role from mysql.roles_mapping m join me on binary m.User = binary me.u and binary m.Host = binary me.h
     where m.Admin_option = 'N'
    union
    select json_value(p.Priv, '$.default_role') from mysql.global_priv p join me on binary p.User = binary me.u and binary p.Host = binary me.h
     where coalesce(json_value(p.Priv, '$.default_role'), '') <> ''
    union
    select m.Role from mysql.roles_mapping m join agent a on binary m.User = binary a.role where m.Host = ''
  ),
  ${MARIADB_PRIVILEGED},
  barred(role) as (
    select role from privileged
    union select role from agent
    union
    select m.User from mysql.roles_mapping m join barred b on binary m.Role = binary b.role where m.Host = ''
  ),
  classified as (
    select u.User as id, u.is_role as is_role,
           case when binary u.is_role <> 'Y' then 'user'
                when exists (select 1 from agent a where binary a.role = binary u.User) then 'agent'
                when exists (select 1 from privileged p where binary p.role = binary u.User) then 'privileged'
                when exists (select 1 from barred b where binary b.role = binary u.User) then 'inherits'
           end as refused
      from mysql.user u
  )`;

export const MYSQL_GLOBAL_PRIVS = [
  'Select', 'Insert', 'Update', 'Delete', 'Create', 'Drop', 'Reload', 'Shutdown', 'Process', 'File', 'Grant', 'References',
  'Index', 'Alter', 'Show_db', 'Super', 'Create_tmp_table', 'Lock_tables', 'Execute', 'Repl_slave', 'Repl_client',
  'Create_view', 'Show_view', 'Create_routine', 'Alter_routine', 'Create_user', 'Event', 'Trigger', 'Create_tablespace',
  'Create_role', 'Drop_role',
].map((p) => `${p}_priv = 'Y'`).join(' or ');

/** The same definition on MySQL 8, over the `*_priv` columns, global_grants, db and tables_priv. */
export const MYSQL_PRIVILEGED = `privileged(u, h) as (
    select User, Host from mysql.user where ${MYSQL_GLOBAL_PRIVS}
    union select USER, HOST from mysql.global_grants
    union select User, Host from mysql.db where 'mysql' like Db or Grant_priv = 'Y'
    union select User, Host from mysql.tables_priv where Db = 'mysql' or find_in_set('Grant', Table_priv) > 0
  )`;

/**
 * MySQL 8 (not tested here: no MySQL server on these machines): roles are
 * accounts made by CREATE ROLE (locked, expired, no password) or already
 * granted (mysql.role_edges), ids `'role'@'host'`.
 */
export const MYSQL_CLASSIFIED = `with recursive
  ${ME},
  agent(u, h) as (
    select e.FROM_USER, e.FROM_HOST from mysql.role_edges e join me on e.TO_USER = me.u and e.TO_HOST = me.h where e.WITH_ADMIN_OPTION = 'N'
    union
    select d.DEFAULT_ROLE_USER, d.DEFAULT_ROLE_HOST from mysql.default_roles d join me on d.USER = me.u and d.HOST = me.h
    union
    select e.FROM_USER, e.FROM_HOST from mysql.role_edges e join agent a on e.TO_USER = a.u and e.TO_HOST = a.h
  ),
  ${MYSQL_PRIVILEGED},
  barred(u, h) as (
    select u, h from privileged
    union select u, h from agent
    union
    select e.TO_USER, e.TO_HOST from mysql.role_edges e join barred b on e.FROM_USER = b.u and e.FROM_HOST = b.h
  ),
  classified as (
    select u.User as user, u.Host as host,
           case when not ((u.account_locked = 'Y' and u.password_expired = 'Y' and u.authentication_string = '')
                          or exists (select 1 from mysql.role_edges e where e.FROM_USER = u.User and e.FROM_HOST = u.Host)) then 'user'
                when exists (select 1 from agent a where a.u = u.User and a.h = u.Host) then 'agent'
                when exists (select 1 from privileged p where p.u = u.User and p.h = u.Host) then 'privileged'
                when exists (select 1 from barred b where b.u = u.User and b.h = u.Host) then 'inherits'
           end as refused
      from mysql.user u
  )`;
