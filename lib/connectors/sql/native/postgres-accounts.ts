import { OutpostError } from '../../../util/errors.js';
import { quoteIdent } from '../ident.js';
import { SCRAM_VERIFIER, scramVerifier } from '../verifiers.js';
import { ddl, intAttribute, type AccountOptions, type AccountStatements, type AttributeValue } from './accounts.js';
import { CLASSIFIED, PG_ACCOUNTS } from './postgres.js';
import type { Compile } from './types.js';

const q = (name: string): string => quoteIdent('postgres', name);
/** PostgreSQL silently truncates longer identifiers (NAMEDATALEN - 1): a created role would not be the one asked for. */
const MAX_ROLE_BYTES = 63;

/**
 * Which roles a job may write (delete, set the password of, update): the
 * agent's `agent` set from the entitlement classification (its session and
 * current role and every role it inherits) is refused, and so is every role
 * that is privileged — SUPERUSER, CREATEROLE, BYPASSRLS, REPLICATION, a
 * predefined `pg_*` role — or a member, directly or not, of such a role or of
 * the agent's own role (it could SET ROLE into it: a password set on it would
 * hand out that role's power).
 */
const TARGETS = `${CLASSIFIED},
  powerful(oid) as (
    select r.oid from pg_roles r
     where r.rolsuper or r.rolcreaterole or r.rolbypassrls or r.rolreplication or starts_with(r.rolname, 'pg_')
        or r.rolname in (session_user, current_user)
    union
    select am.member from pg_auth_members am join powerful p on am.roleid = p.oid
  ),
  target as (
    select r.rolname as id,
           case when starts_with(r.rolname, 'pg_') then 'predefined'
                when r.rolsuper then 'superuser'
                when r.rolcreaterole then 'createrole'
                when r.rolbypassrls then 'bypassrls'
                when r.rolreplication then 'replication'
                when r.oid in (select oid from agent) then 'agent'
                when r.oid in (select oid from powerful) then 'inherits'
           end as refused
      from pg_roles r
  )`;

/** `validUntil`: a date or an ISO-8601 date-time with a zone; null or `infinity` clears it. */
const ISO_TIME = /^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2}))?$/;
function validUntil(value: AttributeValue): string {
  if (value === null || value === 'infinity') return 'infinity';
  const t = ISO_TIME.test(value) ? Date.parse(value) : NaN;
  if (Number.isNaN(t)) throw new OutpostError('invalid_request', 'attributes.validUntil: must be an ISO-8601 date or date-time with a zone, "infinity" or null');
  return new Date(t).toISOString();
}

/**
 * PostgreSQL account lifecycle (roles). createAccount is `CREATE ROLE … LOGIN`
 * (NOLOGIN when `enabled: false`) with every privilege flag explicitly off;
 * a password is a SCRAM-SHA-256 verifier computed here, so the server (and
 * its statement log) never sees the plaintext. PostgreSQL has no
 * "must change password" state: `mustChange: true` is refused. Attributes:
 * `connectionLimit` (CONNECTION LIMIT, -1 = none) and `validUntil` (VALID UNTIL:
 * when the password stops being accepted — not a request to change it).
 */
export function postgresAccountStatements(compile: Compile, opts: AccountOptions): AccountStatements {
  const password = (plain: string): string => {
    const verifier = scramVerifier(plain, { iterations: opts.scramIterations });
    // Only base64 characters, `$` and `:`: safe between single quotes, checked rather than assumed.
    if (!SCRAM_VERIFIER.test(verifier)) throw new OutpostError('internal', 'the SCRAM verifier has an unexpected form');
    return `password '${verifier}'`;
  };
  return {
    getAccount: (a) => compile(`${PG_ACCOUNTS} and r.rolname = ?`, [a]),
    targetState: (a) => compile(`${TARGETS} select t.refused from target t where t.id = ?`, [a]),
    accountIdOf(name) {
      if (Buffer.byteLength(name, 'utf8') > MAX_ROLE_BYTES) {
        throw new OutpostError('invalid_request', `account.name: PostgreSQL role names are at most ${MAX_ROLE_BYTES} bytes`);
      }
      if (name.startsWith('pg_')) throw new OutpostError('forbidden', 'account.name: names starting with pg_ are reserved for predefined roles');
      return name;
    },
    create: (a, o) => [
      ddl(
        `create role ${q(a)} with ${o.enabled ? 'login' : 'nologin'} nosuperuser nocreatedb nocreaterole noreplication nobypassrls` +
          (o.password === undefined ? '' : ` ${password(o.password)}`),
      ),
    ],
    drop: (a) => [ddl(`drop role ${q(a)}`)],
    setPassword(a, plain, mustChange) {
      if (mustChange) {
        throw new OutpostError(
          'invalid_request',
          'mustChange: PostgreSQL has no "must change password" state (VALID UNTIL only ends the password\'s validity); send mustChange false or leave it out',
        );
      }
      return [ddl(`alter role ${q(a)} with ${password(plain)}`)];
    },
    attributes: ['connectionLimit', 'validUntil'],
    normalize: (name, value) =>
      name === 'connectionLimit' ? String(intAttribute(name, value ?? '-1', -1, 1_000_000)) : validUntil(value),
    attributeState: (a) =>
      compile(
        `select rolconnlimit::text as "connectionLimit",
                case when rolvaliduntil is null or rolvaliduntil = 'infinity' then 'infinity'
                     else to_char(rolvaliduntil at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') end as "validUntil"
           from pg_roles where rolname = ?`,
        [a],
      ),
    update(a, attrs) {
      const out = [];
      // Canonical values only: an integer, or an ISO time / 'infinity' made by validUntil above.
      if (attrs.connectionLimit !== undefined) out.push(ddl(`alter role ${q(a)} with connection limit ${intAttribute('connectionLimit', attrs.connectionLimit, -1, 1_000_000)}`));
      if (attrs.validUntil !== undefined) out.push(ddl(`alter role ${q(a)} with valid until '${validUntil(attrs.validUntil)}'`));
      return out;
    },
    // UNION (not UNION ALL) over (member, role, via): a finite set, so a cycle ends the recursion instead of looping.
    listGrantsNested: () =>
      compile(
        `with recursive eff(member, roleid, via) as (
           select am.member, am.roleid, am.roleid from pg_auth_members am
           union
           select e.member, am.roleid, e.via from eff e join pg_auth_members am on am.member = e.roleid
         )
         select m.rolname as account_id, r.rolname as entitlement_id, case when e.via = e.roleid then null else v.rolname end as via
           from eff e join pg_roles m on m.oid = e.member join pg_roles r on r.oid = e.roleid join pg_roles v on v.oid = e.via
          where left(m.rolname, 3) <> 'pg_' and e.member <> e.roleid
          order by 1, 2, 3 nulls first`,
      ),
    nestedGrantRow: (row) => {
      const via = row.via === null || row.via === undefined ? undefined : String(row.via);
      return { accountId: String(row.account_id), entitlementId: String(row.entitlement_id), ...(via === undefined ? {} : { via }) };
    },
  };
}
