/**
 * What `grant`, `revoke` and `setAccountEnabled` may act on: an account is an
 * entry listAccounts would list (under userBase, matching userFilter), a
 * group one listEntitlements would list (under groupBase, matching
 * groupFilter, of a group object class, allowed by `entitlements`). Neither
 * is ever the base entry or a container. The entry's objectClass is read
 * before anything is written; every refusal is a non-retryable `forbidden`
 * naming the rule, and no payload value is echoed.
 */
import type { Entry, Filter } from 'ldapts';
import { OutpostError } from '../../util/errors.js';
import type { OperationContext } from '../types.js';
import type { LdapSettings } from './config.js';
import { formatDN, isUnderDN, parseDN, type Rdn } from './dn.js';
import { EntryView } from './entries.js';
import type { LdapPool } from './pool.js';
import { payloadDN, readEntry } from './search.js';

/** Object classes of groups whose members the connector knows how to write. */
export const GROUP_CLASSES: ReadonlySet<string> = new Set(['group', 'groupofnames', 'groupofuniquenames', 'posixgroup']);

/** Object classes of containers (and domain heads): never an account or a group, whatever a filter says. */
export const CONTAINER_CLASSES: ReadonlySet<string> = new Set([
  'organizationalunit', 'organization', 'domain', 'domaindns', 'dcobject', 'container', 'builtindomain',
  'locality', 'country', 'lostandfound', 'msds-quotacontainer', 'nisdomainobject',
]);

export type TargetKind = 'account' | 'group';

const sameDN = (a: readonly Rdn[], b: readonly Rdn[]): boolean => a.length === b.length && isUnderDN(a, b);

/** Lower-case objectClass values of an entry. */
export function objectClasses(entry: Entry): Set<string> {
  return new Set(new EntryView(entry).all('objectClass').map((c) => c.toLowerCase()));
}

/**
 * Why an entry (DN and object classes) is not a target of this kind, or
 * undefined when it is. Shared with listEntitlements, so that what is listed
 * and what may be granted are one definition.
 */
export function refusal(s: LdapSettings, kind: TargetKind, dn: readonly Rdn[], classes: ReadonlySet<string>): string | undefined {
  if (sameDN(dn, s.base)) return 'is the base entry (baseDN) itself';
  const container = [...classes].find((c) => CONTAINER_CLASSES.has(c));
  if (container) return `is a container (objectClass ${container}), not ${kind === 'group' ? 'a group' : 'an account'}`;
  const group = [...classes].some((c) => GROUP_CLASSES.has(c));
  if (kind === 'group' && !group) return 'is not a group (objectClass group, groupOfNames, groupOfUniqueNames or posixGroup)';
  if (kind === 'account' && group) return 'is a group, not an account';
  if (kind === 'group' && !s.entitlements.allows(formatDN(dn))) return `is not allowed by ${s.entitlements.key}`;
  return undefined;
}

/**
 * Reads the entry a payload names and checks that it is an account or a
 * group this resource may change. Returns the entry with `attributes`
 * (objectClass is always read). Absent: `not_found`; anything else refused.
 */
export async function target(
  pool: LdapPool,
  s: LdapSettings,
  value: string,
  field: string,
  kind: TargetKind,
  attributes: string[],
  ctx: OperationContext,
  opts: { buffers?: string[]; read?: boolean; outsideForbidden?: boolean } = {},
): Promise<{ dn: string; entry: Entry }> {
  const forbid = (why: string): never => {
    throw new OutpostError('forbidden', `ldap ${s.name}: ${field} ${why}`);
  };
  // Lifecycle operations: a DN that parses but lies outside baseDN is a containment refusal (forbidden).
  let parsed: Rdn[] | undefined;
  try {
    parsed = parseDN(value);
  } catch {
    // payloadDN below says what is wrong with the syntax
  }
  if (opts.outsideForbidden && parsed?.length && !isUnderDN(parsed, s.base)) forbid('lies outside baseDN');
  const dn = payloadDN(s, value, field);
  const rdns = parseDN(dn);
  const base = kind === 'account' ? s.userBase : s.groupBase;
  if (!isUnderDN(rdns, parseDN(base))) forbid(`lies outside ${kind === 'account' ? 'userBase' : 'groupBase'}`);
  const filter: Filter = kind === 'account' ? s.userFilter : s.groupFilter;
  const self = kind === 'account' && !opts.read ? selfCheck(s) : undefined;
  const attrs = [...new Set(['objectClass', ...attributes, ...(self?.attributes ?? [])])];
  // One read on the usual path: the entry as the listing would see it.
  const entry = await readEntry(pool, ctx.signal, dn, attrs, opts.buffers ?? [], filter);
  if (!entry) {
    const any = await readEntry(pool, ctx.signal, dn, ['objectClass']);
    if (!any) throw new OutpostError('not_found', `ldap ${s.name}: ${field} names no entry`);
    return forbid(refusal(s, kind, rdns, objectClasses(any)) ?? `does not match ${kind === 'account' ? 'userFilter' : 'groupFilter'}`);
  }
  const why = refusal(s, kind, parseDN(entry.dn || dn), objectClasses(entry));
  if (why) forbid(why);
  if (self?.is(rdns, new EntryView(entry))) forbid("is the agent's own bind account (bindDN), which jobs never change");
  return { dn, entry };
}

/**
 * How to recognise the agent's own account: by DN, or (AD binds by UPN or
 * DOMAIN\\name) by userPrincipalName or sAMAccountName, compared case-insensitively.
 */
export function selfCheck(s: LdapSettings): { attributes: string[]; is(dn: readonly Rdn[], v: EntryView): boolean } {
  const bind = s.bindDN;
  const upn = /^[^=,\s]+@[^=,\s]+$/.test(bind) ? bind.toLowerCase() : undefined;
  const down = /^[^=,\s]+\\([^=,\\\s]+)$/.exec(bind)?.[1]?.toLowerCase();
  let bindRdns: Rdn[] | undefined;
  if (!upn && !down) {
    try {
      bindRdns = parseDN(bind);
    } catch {
      bindRdns = undefined;
    }
  }
  return {
    attributes: upn ? ['userPrincipalName', 'sAMAccountName'] : down ? ['sAMAccountName'] : [],
    is: (dn, v) => {
      if (bindRdns) return sameDN(dn, bindRdns);
      const sam = (name: string | undefined) => v.all('sAMAccountName').some((x) => x.toLowerCase() === name);
      // AD also accepts the implicit UPN sAMAccountName@domain (the built-in Administrator has no userPrincipalName):
      // a sAMAccountName equal to the UPN's name part counts as self too (it refuses more, never less).
      if (upn) return v.all('userPrincipalName').some((x) => x.toLowerCase() === upn) || sam(upn.slice(0, upn.lastIndexOf('@')));
      return sam(down);
    },
  };
}
