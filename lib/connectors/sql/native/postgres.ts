import { jsonValue, truthy } from '../records.js';
import { quoteIdent } from '../ident.js';
import type { Compile, NativeStatements } from './types.js';

const q = (name: string): string => quoteIdent('postgres', name);
const s = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

/**
 * PostgreSQL principals (pg_roles). Accounts are all roles except the
 * predefined `pg_*` ones, whether or not they can log in, so that a disabled
 * account (NOLOGIN) is still listed; `enabled` is `rolcanlogin`.
 * Entitlements are the roles that cannot log in (group roles), including the
 * predefined ones such as pg_read_all_data. A disabled account therefore also
 * appears as an entitlement: PostgreSQL does not tell users from groups.
 * Grants are pg_auth_members.
 */
export function postgresStatements(compile: Compile): NativeStatements {
  return {
    listAccounts: () =>
      compile(
        `select r.rolname as id, r.oid::text as uid, r.rolcanlogin as enabled, r.rolsuper as superuser,
                r.rolcreaterole as create_role, r.rolcreatedb as create_db, r.rolvaliduntil as valid_until,
                r.rolconnlimit as connection_limit
           from pg_roles r where left(r.rolname, 3) <> 'pg_' order by r.rolname`,
      ),
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
        `select r.rolname as id, r.oid::text as uid, shobj_description(r.oid, 'pg_authid') as description
           from pg_roles r where not r.rolcanlogin order by r.rolname`,
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
    entitlementExists: (e) => compile('select 1 as found from pg_roles where rolname = ?', [e]),
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
