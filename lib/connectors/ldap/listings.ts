import { AndFilter, EqualityFilter, OrFilter, type Client, type Entry } from 'ldapts';
import type { AccountRecord, EntitlementRecord, GrantRecord, ListingResult } from '../../protocol/operations.js';
import { OutpostError } from '../../util/errors.js';
import type { OperationContext } from '../types.js';
import type { LdapSettings } from './config.js';
import { canonicalDN, parseDN } from './dn.js';
import { mapLdapError } from './errors.js';
import { EntryView, guidToString } from './entries.js';
import type { LdapPool } from './pool.js';
import { PageBuffer, pagedSearch } from './search.js';
import { objectClasses, refusal } from './targets.js';

function isListedGroup(s: LdapSettings, e: Entry): boolean {
  try {
    return refusal(s, 'group', parseDN(e.dn), objectClasses(e)) === undefined;
  } catch {
    return false; // a DN the server sent that does not parse can never be granted either
  }
}

/** Bit 2 of userAccountControl: ACCOUNTDISABLE. */
export const UAC_ACCOUNTDISABLE = 0x2;

/** The attributes an account listing reads, per flavor. */
export function accountAttributes(s: LdapSettings): string[] {
  const common = ['cn', 'mail', 'displayName', 'givenName', 'sn'];
  const extra = s.accountAttributes.filter((a) => !s.attributes.forbidden(a));
  return s.flavor === 'ad'
    ? [...common, 'objectGUID', 'sAMAccountName', 'userPrincipalName', 'userAccountControl', ...extra]
    : [...common, 'uid', 'entryUUID', s.disabledAttribute, ...extra];
}

/** The stable id of an entry: objectGUID (AD, as a GUID string) or entryUUID. */
export function entryUid(s: LdapSettings, v: EntryView): string | null {
  if (s.flavor === 'ad') {
    const b = v.buffer('objectGUID');
    return b ? guidToString(b) : v.first('objectGUID');
  }
  return v.first('entryUUID');
}

/** Whether an account entry is enabled: UAC bit 2 clear (AD), or the disabled attribute absent. */
export function isEnabled(s: LdapSettings, v: EntryView): boolean {
  if (s.flavor === 'ad') return (Number(v.first('userAccountControl') ?? 0) & UAC_ACCOUNTDISABLE) === 0;
  return !v.has(s.disabledAttribute);
}

/** An account entry as an AccountRecord (id = canonical DN, name = uid or sAMAccountName). */
export function toAccount(s: LdapSettings, entry: Entry): AccountRecord {
  const v = new EntryView(entry);
  const attributes: Record<string, unknown> = {};
  for (const a of s.recordAttributes) {
    const values = v.json(a);
    if (values.length) attributes[a] = values.length === 1 ? values[0] : values;
  }
  if (s.flavor === 'ad' && v.has('userAccountControl')) attributes.userAccountControl = Number(v.first('userAccountControl'));
  return {
    id: canonicalDN(entry.dn),
    uid: entryUid(s, v),
    name: (s.flavor === 'ad' ? v.first('sAMAccountName') : v.first('uid')) ?? v.first('cn'),
    email: v.first('mail'),
    enabled: isEnabled(s, v),
    attributes,
  };
}

export function groupAttributes(s: LdapSettings, withMembers: boolean): string[] {
  const base = ['cn', 'description', 'objectClass'];
  if (s.flavor === 'ad') return [...base, 'objectGUID', 'sAMAccountName', ...(withMembers ? [`member;range=0-${s.rangeSize - 1}`] : [])];
  return [...base, 'entryUUID', ...(withMembers ? ['member', 'uniqueMember', 'memberUid'] : [])];
}

/** `listEntitlements`: groups under groupBase matching groupFilter. */
export async function listEntitlements(pool: LdapPool, s: LdapSettings, ctx: OperationContext): Promise<ListingResult> {
  let records = 0;
  await pagedSearch(
    pool,
    ctx.signal,
    {
      base: s.groupBase,
      filter: s.groupFilter,
      attributes: groupAttributes(s, false),
      explicitBufferAttributes: s.flavor === 'ad' ? ['objectGUID'] : [],
      pageSize: s.pageSize,
    },
    async (entries) => {
      if (!entries.length) return;
      const page: EntitlementRecord[] = [];
      for (const e of entries) {
        // The same rule as grant/revoke (targets.ts): a group class, not the base or a container, allowed by `entitlements`.
        if (!isListedGroup(s, e)) continue;
        const id = canonicalDN(e.dn);
        const v = new EntryView(e);
        page.push({ id, uid: entryUid(s, v), name: v.first('cn') ?? v.first('sAMAccountName'), kind: 'group', description: v.first('description') });
      }
      if (!page.length) return;
      records += page.length;
      await ctx.writePage(page);
    },
  );
  return { records };
}

/** Follow-up reads inside a listing: their errors go through the one table too. */
async function mapped<T>(s: LdapSettings, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw mapLdapError(err, s.name, 'search');
  }
}

/** Groups per page when listing grants (each may carry thousands of member values). */
const GRANT_GROUPS_PER_PAGE = 50;

const RANGE_RE = /^member;range=(\d+)-(\d+|\*)$/i;

/**
 * The ranged `member` key of an entry that carries values. ldapts also lists
 * every requested attribute the server did not return, empty, so the key we
 * asked for may sit beside the real answer (`member;range=1500-*`).
 */
function rangeKey(v: EntryView): string | undefined {
  const keys = v.keys().filter((k) => RANGE_RE.test(k) && v.all(k).length > 0);
  return keys.find((k) => k.endsWith('*')) ?? keys[0];
}

/**
 * Members of one AD group, range by range. AD returns at most MaxValRange
 * (1 500) values of `member` per read as `member;range=0-1499`; the next
 * read asks `member;range=1500-2999`, until a range ends with `*`.
 */
export async function adMembers(client: Client, s: LdapSettings, v: EntryView, emit: (dn: string) => Promise<void>, signal: AbortSignal): Promise<void> {
  let key = rangeKey(v);
  if (!key) {
    // No ranged values: an empty group, or a server that ignored the range option (plain `member` is then complete).
    for (const m of v.all('member')) await emit(m);
    return;
  }
  let current: EntryView = v;
  for (;;) {
    for (const m of current.all(key)) await emit(m);
    const end = RANGE_RE.exec(key)?.[2];
    // rangeKey() matched RANGE_RE already; a key without an end is as good as the last range.
    if (end === undefined) return;
    if (end === '*' || signal.aborted) return;
    const next = Number(end) + 1;
    const res = await mapped(s, () =>
      client.search(v.dn, { scope: 'base', attributes: [`member;range=${next}-${next + s.rangeSize - 1}`], derefAliases: 'never' }),
    );
    const e = res.searchEntries[0];
    if (!e) return;
    current = new EntryView(e);
    key = rangeKey(current);
    // Past the last value there is nothing more.
    if (!key) return;
    // A range that does not start where we asked would loop or skip members: fail rather than list a partial group.
    if (Number(RANGE_RE.exec(key)?.[1]) !== next) {
      throw new OutpostError('internal', `ldap ${s.name}: the server answered member range ${key} when asked from ${next}`);
    }
  }
}

/** Resolves posixGroup memberUid values to account DNs, 100 at a time, with escaped equality filters. */
export async function resolveUids(client: Client, s: LdapSettings, uids: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (let i = 0; i < uids.length; i += 100) {
    const chunk = uids.slice(i, i + 100);
    const filter = new AndFilter({
      filters: [s.userFilter, new OrFilter({ filters: chunk.map((u) => new EqualityFilter({ attribute: 'uid', value: u })) })],
    });
    const res = await mapped(s, () =>
      client.search(s.userBase, { scope: 'sub', filter, attributes: ['uid'], derefAliases: 'never', paged: { pageSize: 200 } }),
    );
    for (const e of res.searchEntries) for (const u of new EntryView(e).all('uid')) out.set(u, e.dn);
  }
  return out;
}

/**
 * `{accountId: memberDN, entitlementId: groupDN}` for every member of every
 * group, written in pages of `pageSize` grants while the groups are read
 * page by page (large AD groups range by range).
 */
export async function listGrants(pool: LdapPool, s: LdapSettings, ctx: OperationContext): Promise<ListingResult> {
  const out = new PageBuffer<GrantRecord>(s.pageSize, (p) => ctx.writePage(p), ctx.signal);
  await pagedSearch(
    pool,
    ctx.signal,
    // Groups carry their members: fewer groups a page keeps a page of big OpenLDAP groups in bounds.
    { base: s.groupBase, filter: s.groupFilter, attributes: groupAttributes(s, true), pageSize: Math.min(s.pageSize, GRANT_GROUPS_PER_PAGE) },
    async (entries, client) => {
      const posix: Array<{ group: string; uids: string[] }> = [];
      for (const e of entries) {
        const v = new EntryView(e);
        const group = canonicalDN(e.dn);
        const emit = (accountId: string) => out.push({ accountId: canonicalDN(accountId), entitlementId: group });
        if (s.flavor === 'ad') {
          await adMembers(client, s, v, emit, ctx.signal);
          continue;
        }
        for (const m of v.all('member')) await emit(m);
        for (const m of v.all('uniqueMember')) await emit(m.replace(/#'[01]*'B$/, ''));
        const uids = v.all('memberUid');
        if (uids.length) posix.push({ group, uids });
      }
      if (posix.length) {
        const dns = await resolveUids(client, s, [...new Set(posix.flatMap((p) => p.uids))]);
        let unresolved = 0;
        for (const p of posix) {
          for (const u of p.uids) {
            const dn = dns.get(u);
            if (dn) await out.push({ accountId: canonicalDN(dn), entitlementId: p.group });
            else unresolved++;
          }
        }
        if (unresolved) ctx.log.debug('ldap memberUid values without an account', { resource: s.name, unresolved });
      }
    },
  );
  await out.flush();
  return { records: out.count };
}
