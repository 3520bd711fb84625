import { jsonValue, truthy } from '../records.js';
import { quoteIdent } from '../ident.js';
import type { Compile, NativeStatements } from './types.js';

const q = (name: string): string => quoteIdent('postgres', name);
const s = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

/**
 * Every role with the rule it breaks (`refused`), or null for an entitlement.
 * One definition, used by listEntitlements and by grant/revoke (inside their
 * transaction). A role is not an entitlement when it is predefined (`pg_*`),
 * can log in, has SUPERUSER, CREATEROLE, BYPASSRLS or REPLICATION, is the
 * agent's own role (session and current user) or one the agent is a member
 * of, directly or not (PostgreSQL 16+: by a membership with INHERIT or SET),
 * or is itself a member (directly or not, any option) of any such role:
 * whoever is granted it could SET ROLE into, or administer, the other one.
 */
export const CLASSIFIED = `with recursive
  agent(oid) as (
    select oid from pg_roles where rolname in (session_user, current_user)
    union
    select am.roleid from pg_auth_members am join agent a on am.member = a.oid
     -- PostgreSQL 16+: a membership with neither INHERIT nor SET (what CREATEROLE gives a role's creator,
     -- with ADMIN) lends the agent nothing; before 16 the columns do not exist and every membership counts.
     where coalesce((to_jsonb(am) ->> 'inherit_option')::boolean, true) or coalesce((to_jsonb(am) ->> 'set_option')::boolean, true)
  ),
  barred(oid) as (
    select r.oid from pg_roles r
     where r.rolcanlogin or r.rolsuper or r.rolcreaterole or r.rolbypassrls or r.rolreplication
        or starts_with(r.rolname, 'pg_') or r.oid in (select oid from agent)
    union
    select am.member from pg_auth_members am join barred b on am.roleid = b.oid
  ),
  classified as (
    select r.rolname as id, r.oid,
           case when starts_with(r.rolname, 'pg_') then 'predefined'
                when r.rolcanlogin then 'login'
                when r.rolsuper then 'superuser'
                when r.rolcreaterole then 'createrole'
                when r.rolbypassrls then 'bypassrls'
                when r.rolreplication then 'replication'
                when r.oid in (select oid from agent) then 'agent'
                when r.oid in (select oid from barred) then 'inherits'
           end as refused
      from pg_roles r
  )`;

/** The account columns of listAccounts (and getAccount, which adds a condition): every role but `pg_*`. */
export const PG_ACCOUNTS = `select r.rolname as id, r.oid::text as uid, r.rolcanlogin as enabled, r.rolsuper as superuser,
                r.rolcreaterole as create_role, r.rolcreatedb as create_db, r.rolvaliduntil as valid_until,
                r.rolconnlimit as connection_limit
           from pg_roles r where left(r.rolname, 3) <> 'pg_'`;

/**
 * PostgreSQL principals (pg_roles). Accounts are all roles except the
 * predefined `pg_*` ones, whether or not they can log in, so that a disabled
 * account (NOLOGIN) is still listed; `enabled` is `rolcanlogin`.
 * Entitlements are the roles CLASSIFIED as such: group roles (NOLOGIN)
 * without dangerous attributes, outside the agent's own memberships. A
 * disabled account (NOLOGIN) can therefore still be an entitlement.
 * Grants are pg_auth_members, all of them (an access review sees every
 * membership, also those no job may change).
 */
export function postgresStatements(compile: Compile): NativeStatements {
  return {
    listAccounts: () => compile(`${PG_ACCOUNTS} order by r.rolname`),
    account: (row) => ({
      id: String(row.id),
      uid: s(row.uid),
      name: String(row.id),
      email: null,
      enabled: truthy(row.enabled),
      attributes: {
        superuser: truthy(row.superuser),
        createRole: truthy(row.create_role),
        createDb: truthy(row.create_db),
        validUntil: jsonValue(row.valid_until),
        connectionLimit: jsonValue(row.connection_limit),
      },
    }),
    listEntitlements: () =>
      compile(
        `${CLASSIFIED}
         select c.id, c.oid::text as uid, shobj_description(c.oid, 'pg_authid') as description
           from classified c where c.refused is null order by c.id`,
      ),
    entitlement: (row) => ({ id: String(row.id), uid: s(row.uid), name: String(row.id), kind: 'role', description: s(row.description) }),
    listGrants: () =>
      compile(
        `select m.rolname as account_id, r.rolname as entitlement_id
           from pg_auth_members am join pg_roles r on r.oid = am.roleid join pg_roles m on m.oid = am.member
          where left(m.rolname, 3) <> 'pg_' order by m.rolname, r.rolname`,
      ),
    grantRow: (row) => ({ accountId: String(row.account_id), entitlementId: String(row.entitlement_id) }),
    accountState: (a) => compile(`select rolcanlogin as enabled from pg_roles where rolname = ? and left(rolname, 3) <> 'pg_'`, [a]),
    entitlementState: (e) => compile(`${CLASSIFIED} select c.id, c.refused from classified c where c.id = ?`, [e]),
    isMember: (a, e) =>
      compile(
        `select 1 as found from pg_auth_members am join pg_roles r on r.oid = am.roleid join pg_roles m on m.oid = am.member
          where m.rolname = ? and r.rolname = ?`,
        [a, e],
      ),
    grant: (a, e) => compile(`grant ${q(e)} to ${q(a)}`),
    revoke: (a, e) => compile(`revoke ${q(e)} from ${q(a)}`),
    setEnabled: (a, _state, enabled) => compile(`alter role ${q(a)} ${enabled ? 'login' : 'nologin'}`),
  };
}
