import { OutpostError } from '../../../util/errors.js';
import { quoteIdent } from '../ident.js';
import { truthy } from '../records.js';
import type { Compile, NativeStatements } from './types.js';

const q = (name: string): string => quoteIdent('mssql', name);
const s = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));
/** SQL users, Windows users and external (Entra) users; principal ids up to 4 are dbo, guest, INFORMATION_SCHEMA and sys. */
export const USER_TYPES = `dp.type in ('S', 'U', 'E') and dp.principal_id > 4`;

/**
 * Every database principal with the rule it breaks (`refused`), or null for
 * an entitlement: a database role (type R) that is not `public` or a fixed
 * role (db_owner, db_securityadmin, db_accessadmin …), is not one the agent's
 * database user belongs to (directly or not), and is not itself a member
 * (directly or not) of any such role. One definition for listEntitlements and
 * grant/revoke (read inside their transaction).
 */
const CLASSIFIED = `with agent(principal_id) as (
    select database_principal_id()
    union all
    select rm.role_principal_id from sys.database_role_members rm join agent a on rm.member_principal_id = a.principal_id
  ),
  barred(principal_id) as (
    select principal_id from sys.database_principals where type = 'R' and (is_fixed_role = 1 or name = 'public')
    union all
    select principal_id from agent
    union all
    select rm.member_principal_id from sys.database_role_members rm join barred b on rm.role_principal_id = b.principal_id
  ),
  classified as (
    select dp.name as id, dp.principal_id,
           case when dp.type <> 'R' then 'user'
                when dp.is_fixed_role = 1 or dp.name = 'public' then 'fixed'
                when dp.principal_id in (select principal_id from agent) then 'agent'
                when dp.principal_id in (select principal_id from barred) then 'inherits'
           end as refused
      from sys.database_principals dp
  )`;

/** The account rows of listAccounts (getAccount adds a condition on dp.name). */
export const MSSQL_ACCOUNTS = `select dp.name as id, cast(dp.principal_id as nvarchar(20)) as uid, dp.type_desc as type, sp.name as login,
                case when sp.is_disabled = 1 then 0 else 1 end as enabled, dp.default_schema_name as default_schema
           from sys.database_principals dp left join sys.server_principals sp on sp.sid = dp.sid
          where ${USER_TYPES}`;

/**
 * SQL Server principals of the connected database. Accounts are database
 * users; `enabled` is their server login's state (`sys.server_principals.is_disabled`;
 * a user without a login, such as a contained user, counts as enabled), and
 * setAccountEnabled runs ALTER LOGIN on that login. Entitlements are the
 * database roles CLASSIFIED as such; grants are sys.database_role_members.
 */
export function mssqlStatements(compile: Compile): NativeStatements {
  return {
    listAccounts: () => compile(`${MSSQL_ACCOUNTS} order by dp.name`),
    account: (row) => ({
      id: String(row.id),
      uid: s(row.uid),
      name: String(row.id),
      email: null,
      enabled: truthy(row.enabled),
      attributes: { type: s(row.type), login: s(row.login), defaultSchema: s(row.default_schema) },
    }),
    listEntitlements: () =>
      compile(
        `${CLASSIFIED}
         select c.id, cast(c.principal_id as nvarchar(20)) as uid from classified c where c.refused is null order by c.id`,
      ),
    entitlement: (row) => ({ id: String(row.id), uid: s(row.uid), name: String(row.id), kind: 'role', description: null }),
    listGrants: () =>
      compile(
        `select m.name as account_id, r.name as entitlement_id from sys.database_role_members rm
           join sys.database_principals r on r.principal_id = rm.role_principal_id
           join sys.database_principals m on m.principal_id = rm.member_principal_id
          order by m.name, r.name`,
      ),
    grantRow: (row) => ({ accountId: String(row.account_id), entitlementId: String(row.entitlement_id) }),
    accountState: (a) =>
      compile(
        `select case when sp.is_disabled = 1 then 0 else 1 end as enabled, sp.name as login
           from sys.database_principals dp left join sys.server_principals sp on sp.sid = dp.sid
          where dp.name = ? and ${USER_TYPES}`,
        [a],
      ),
    entitlementState: (e) => compile(`${CLASSIFIED} select c.refused from classified c where c.id = ?`, [e]),
    isMember: (a, e) =>
      compile(
        `select 1 as found from sys.database_role_members rm
           join sys.database_principals r on r.principal_id = rm.role_principal_id
           join sys.database_principals m on m.principal_id = rm.member_principal_id
          where m.name = ? and r.name = ?`,
        [a, e],
      ),
    grant: (a, e) => compile(`alter role ${q(e)} add member ${q(a)}`),
    revoke: (a, e) => compile(`alter role ${q(e)} drop member ${q(a)}`),
    setEnabled: (a, state, enabled) => {
      const login = state.login;
      if (typeof login !== 'string' || !login) throw new OutpostError('invalid_request', `account "${a}" has no server login to enable or disable`);
      return compile(`alter login ${q(login)} ${enabled ? 'enable' : 'disable'}`);
    },
  };
}
