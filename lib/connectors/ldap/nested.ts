/**
 * `listGrants {nested: true}`: effective memberships through nested groups.
 *
 * The group graph (group DNs and group-in-group edges only, never account
 * memberships) is read first and kept in memory, bounded by
 * `nested.maxGroups`. Then groups are read again page by page, as for plain
 * listGrants, and each account member `m` of group `g` gives the direct
 * grant `{m, g}` and, for every group `A` that contains `g` directly or
 * through other groups (walked with a visited set, so cycles end),
 * `{m, A, via: g}`. An account reaching `A` through two direct groups gets
 * one record per direct group. Group members themselves are not listed as
 * accounts: they show up as `via`.
 *
 * AD: a group's parents come from its `memberOf` (one read of all groups);
 * each account's primary group (`primaryGroupID`, not stored in `member`;
 * usually Domain Users) is resolved by RID against the groups' objectSid in
 * one more paged read of the accounts, and counts as a direct grant.
 * OpenLDAP: group DNs first, then `member`/`uniqueMember` edges between them.
 */
import type { Entry } from 'ldapts';
import type { GrantRecord, ListingResult } from '../../protocol/operations.js';
import { OutpostError } from '../../util/errors.js';
import type { OperationContext } from '../types.js';
import type { LdapSettings } from './config.js';
import { canonicalDN, dnKey } from './dn.js';
import { EntryView, sidToString } from './entries.js';
import { adMembers, groupAttributes, resolveUids } from './listings.js';
import type { LdapPool } from './pool.js';
import { PageBuffer, pagedSearch } from './search.js';
import { GROUP_CLASSES, objectClasses } from './targets.js';

const GROUPS_PER_PAGE = 50;

function keyOf(dn: string): string {
  try {
    return dnKey(dn);
  } catch {
    return dn.toLowerCase();
  }
}

interface Graph {
  /** group key → canonical DN */
  dns: Map<string, string>;
  /** group key → keys of the groups it is a direct member of */
  parents: Map<string, string[]>;
  /** AD: group SID → group key */
  sids: Map<string, string>;
}

function isGroup(e: Entry): boolean {
  return [...objectClasses(e)].some((c) => GROUP_CLASSES.has(c));
}

async function readGraph(pool: LdapPool, s: LdapSettings, ctx: OperationContext): Promise<Graph> {
  const g: Graph = { dns: new Map(), parents: new Map(), sids: new Map() };
  const add = (e: Entry): string => {
    const key = keyOf(e.dn);
    g.dns.set(key, canonicalDN(e.dn));
    if (g.dns.size > s.nestedMaxGroups) {
      throw new OutpostError('too_large', `ldap ${s.name}: more than ${s.nestedMaxGroups} groups for a nested listing (resources.${s.name}.nested.maxGroups)`);
    }
    return key;
  };
  const ad = s.flavor === 'ad';
  await pagedSearch(
    pool,
    ctx.signal,
    {
      base: s.groupBase,
      filter: s.groupFilter,
      attributes: ad ? ['objectClass', 'memberOf', 'objectSid'] : ['objectClass'],
      explicitBufferAttributes: ad ? ['objectSid'] : [],
      pageSize: s.pageSize,
    },
    // Synchronous work on each page: the promise only tells pagedSearch to ask for the next one.
    (entries) => {
      for (const e of entries) {
        if (!isGroup(e)) continue;
        const key = add(e);
        if (!ad) continue;
        const v = new EntryView(e);
        const sid = v.buffer('objectSid');
        if (sid) g.sids.set(sidToString(sid), key);
        const up = v.all('memberOf').map(keyOf);
        if (up.length) g.parents.set(key, up);
      }
      return Promise.resolve();
    },
  );
  if (!ad) {
    // Edges: a member value that is one of the groups read above.
    await pagedSearch(
      pool,
      ctx.signal,
      { base: s.groupBase, filter: s.groupFilter, attributes: ['objectClass', 'member', 'uniqueMember'], pageSize: Math.min(s.pageSize, GROUPS_PER_PAGE) },
      (entries) => {
        for (const e of entries) {
          const parent = keyOf(e.dn);
          if (!g.dns.has(parent)) continue;
          const v = new EntryView(e);
          for (const m of [...v.all('member'), ...v.all('uniqueMember').map((x) => x.replace(/#'[01]*'B$/, ''))]) {
            const child = keyOf(m);
            if (!g.dns.has(child)) continue;
            const list = g.parents.get(child);
            if (list) list.push(parent);
            else g.parents.set(child, [parent]);
          }
        }
        return Promise.resolve();
      },
    );
  }
  // Parents outside groupBase/groupFilter are not listed.
  for (const [k, list] of g.parents) g.parents.set(k, list.filter((p) => g.dns.has(p)));
  return g;
}

/** Every group containing `key` directly or transitively, except itself (a cycle leads back to it). */
/** The DN of a group key of the graph (every key readGraph stored has one). */
function dnOf(g: Graph, key: string): string {
  const dn = g.dns.get(key);
  if (dn === undefined) throw new OutpostError('internal', `ldap: group ${key} is not in the graph that was read`);
  return dn;
}

function ancestors(g: Graph, key: string): string[] {
  const seen = new Set<string>([key]);
  const out: string[] = [];
  const stack = [...(g.parents.get(key) ?? [])];
  while (stack.length) {
    const k = stack.pop();
    if (k === undefined) break;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(k);
    for (const p of g.parents.get(k) ?? []) if (!seen.has(p)) stack.push(p);
  }
  return out;
}

export async function listGrantsNested(pool: LdapPool, s: LdapSettings, ctx: OperationContext): Promise<ListingResult> {
  const g = await readGraph(pool, s, ctx);
  const out = new PageBuffer<GrantRecord>(s.pageSize, (p) => ctx.writePage(p), ctx.signal);
  const emit = async (account: string, groupKey: string, up: string[]) => {
    const accountId = canonicalDN(account);
    const via = dnOf(g, groupKey);
    await out.push({ accountId, entitlementId: via });
    for (const a of up) await out.push({ accountId, entitlementId: dnOf(g, a), via });
  };
  await pagedSearch(
    pool,
    ctx.signal,
    { base: s.groupBase, filter: s.groupFilter, attributes: groupAttributes(s, true), pageSize: Math.min(s.pageSize, GROUPS_PER_PAGE) },
    async (entries, client) => {
      for (const e of entries) {
        const key = keyOf(e.dn);
        if (!g.dns.has(key)) continue;
        const up = ancestors(g, key);
        const v = new EntryView(e);
        const member = async (m: string) => {
          if (!g.dns.has(keyOf(m))) await emit(m, key, up);
        };
        if (s.flavor === 'ad') {
          await adMembers(client, s, v, member, ctx.signal);
          continue;
        }
        for (const m of v.all('member')) await member(m);
        for (const m of v.all('uniqueMember')) await member(m.replace(/#'[01]*'B$/, ''));
        const uids = v.all('memberUid');
        if (uids.length) {
          const dns = await resolveUids(client, s, [...new Set(uids)]);
          for (const u of uids) {
            const dn = dns.get(u);
            if (dn) await emit(dn, key, up);
          }
        }
      }
    },
  );
  if (s.flavor === 'ad' && g.sids.size) {
    // Primary groups: the account's SID with its last part replaced by primaryGroupID is the group's SID.
    await pagedSearch(
      pool,
      ctx.signal,
      { base: s.userBase, filter: s.userFilter, attributes: ['primaryGroupID', 'objectSid'], explicitBufferAttributes: ['objectSid'], pageSize: s.pageSize },
      async (entries) => {
        for (const e of entries) {
          const v = new EntryView(e);
          const rid = v.first('primaryGroupID');
          const sid = v.buffer('objectSid');
          if (!rid || !/^\d{1,10}$/.test(rid) || !sid) continue;
          const text = sidToString(sid);
          const key = g.sids.get(`${text.slice(0, text.lastIndexOf('-'))}-${rid}`);
          if (key) await emit(e.dn, key, ancestors(g, key));
        }
      },
    );
  }
  await out.flush();
  return { records: out.count };
}
