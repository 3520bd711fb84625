import { randomBytes } from 'node:crypto';
import { OutpostError } from '../../../util/errors.js';
import { quoteIdent } from '../ident.js';
import { MSSQL_HASHED, mssqlHashedPassword } from '../verifiers.js';
import { ddl, type AccountStatements } from './accounts.js';
import { MSSQL_ACCOUNTS, USER_TYPES } from './mssql.js';
import type { Compile } from './types.js';

const q = (name: string): string => quoteIdent('mssql', name);
/** SQL Server names are sysname (nvarchar(128)). */
const MAX_NAME_CHARS = 128;
/** Database roles whose members administer the database or its principals. */
const ADMIN_DB_ROLES = `('db_owner', 'db_securityadmin', 'db_accessadmin', 'db_ddladmin')`;

/**
 * Which database users a job may write: never the agent's own user or login
 * (`agent`), never a member (directly or not) of an administrative database
 * role, nor a user whose login is in a fixed server role (sysadmin,
 * securityadmin …) or holds CONTROL SERVER / ALTER ANY LOGIN / IMPERSONATE
 * ANY LOGIN (`fixed`, `privileged`). SQL Server refuses membership cycles, and
 * the recursion is bounded anyway (maxrecursion).
 */
const TARGETS = `with powerful(principal_id) as (
    select principal_id from sys.database_principals where type = 'R' and name in ${ADMIN_DB_ROLES}
    union all
    select rm.member_principal_id from sys.database_role_members rm join powerful p on rm.role_principal_id = p.principal_id
  )
  select sp.name as login,
         case when dp.principal_id = database_principal_id() or sp.name = suser_sname() then 'agent'
              when dp.principal_id in (select principal_id from powerful) then 'fixed'
              when exists (select 1 from sys.server_role_members srm join sys.server_principals r on r.principal_id = srm.role_principal_id
                            where srm.member_principal_id = sp.principal_id and r.is_fixed_role = 1) then 'fixed'
              when exists (select 1 from sys.server_permissions x where x.grantee_principal_id = sp.principal_id and x.state in ('G', 'W')
                            and x.permission_name in ('CONTROL SERVER', 'ALTER ANY LOGIN', 'IMPERSONATE ANY LOGIN')) then 'privileged'
         end as refused
    from sys.database_principals dp left join sys.server_principals sp on sp.sid = dp.sid
   where ${USER_TYPES} and dp.name = ?
  option (maxrecursion 100)`;

/**
 * SQL Server account lifecycle (compiled and checked offline only: no SQL
 * Server here). createAccount makes a SQL login and a database user of the
 * same name (`CREATE LOGIN … WITH PASSWORD = 0x… HASHED`, `CREATE USER … FOR
 * LOGIN`); the password goes as SQL Server's own salted SHA-512 hash, so no
 * trace or audit shows the plaintext, which also means `mustChange` (MUST_CHANGE
 * cannot be combined with HASHED) is refused. deleteAccount drops the
 * database user only: the login is server-wide and may serve other databases.
 * Attribute: `defaultSchema`.
 */
export function mssqlAccountStatements(compile: Compile): AccountStatements {
  const hashed = (plain: string): string => {
    const hash = mssqlHashedPassword(plain);
    if (!MSSQL_HASHED.test(hash)) throw new OutpostError('internal', 'the password hash has an unexpected form');
    return `password = ${hash} hashed`;
  };
  const loginOf = (a: string, state: { login?: unknown }): string => {
    if (typeof state.login !== 'string' || !state.login) throw new OutpostError('invalid_request', `account "${a}" has no server login to set a password on`);
    return state.login;
  };
  return {
    getAccount: (a) => compile(`${MSSQL_ACCOUNTS} and dp.name = ?`, [a]),
    targetState: (a) => compile(TARGETS, [a]),
    accountIdOf(name) {
      if ([...name].length > MAX_NAME_CHARS) throw new OutpostError('invalid_request', `account.name: SQL Server names are at most ${MAX_NAME_CHARS} characters`);
      return name;
    },
    create: (a, o) => [
      ddl(`create login ${q(a)} with ${hashed(o.password ?? randomBytes(24).toString('base64'))}`),
      ddl(`create user ${q(a)} for login ${q(a)}`),
      ...(o.enabled ? [] : [ddl(`alter login ${q(a)} disable`)]),
    ],
    drop: (a) => [ddl(`drop user ${q(a)}`)],
    setPassword(a, plain, mustChange, state) {
      if (mustChange) {
        throw new OutpostError('invalid_request', 'mustChange: SQL Server cannot combine MUST_CHANGE with a hashed password, and the agent never sends the plaintext');
      }
      return [ddl(`alter login ${q(loginOf(a, state))} with ${hashed(plain)}`)];
    },
    attributes: ['defaultSchema'],
    normalize(_name, value) {
      const schema = value ?? 'dbo';
      if (!schema || [...schema].length > MAX_NAME_CHARS) throw new OutpostError('invalid_request', `attributes.defaultSchema: must be a schema name of 1 to ${MAX_NAME_CHARS} characters`);
      return schema;
    },
    attributeState: (a) => compile(`select coalesce(dp.default_schema_name, 'dbo') as defaultSchema from sys.database_principals dp where dp.name = ?`, [a]),
    update: (a, attrs) => (attrs.defaultSchema === undefined ? [] : [ddl(`alter user ${q(a)} with default_schema = ${q(attrs.defaultSchema)}`)]),
    listGrantsNested: () =>
      compile(
        `with eff(member_id, role_id, via_id, depth) as (
           select rm.member_principal_id, rm.role_principal_id, rm.role_principal_id, 1 from sys.database_role_members rm
           union all
           select e.member_id, rm.role_principal_id, e.via_id, e.depth + 1
             from eff e join sys.database_role_members rm on rm.member_principal_id = e.role_id where e.depth < 32
         )
         select distinct m.name as account_id, r.name as entitlement_id, case when e.via_id = e.role_id then null else v.name end as via
           from eff e join sys.database_principals m on m.principal_id = e.member_id
           join sys.database_principals r on r.principal_id = e.role_id join sys.database_principals v on v.principal_id = e.via_id
          where e.member_id <> e.role_id
          order by account_id, entitlement_id, via`,
      ),
    nestedGrantRow: (row) => {
      const via = row.via === null || row.via === undefined ? undefined : String(row.via);
      return { accountId: String(row.account_id), entitlementId: String(row.entitlement_id), ...(via === undefined ? {} : { via }) };
    },
  };
}
