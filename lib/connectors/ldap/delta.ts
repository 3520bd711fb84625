/**
 * `listAccounts` with a cursor for delta listings.
 *
 * AD: the cursor holds the DC's invocationId (its NTDS Settings object,
 * named by the root DSE's dsServiceName) and the highestCommittedUSN read
 * before the listing; a delta asks for `uSNChanged` above it on the same DC
 * (USNs are per DC: a cursor from another DC gives a full listing, `delta:
 * false`). Deleted accounts come from tombstones (Show Deleted control) whose
 * lastKnownParent lies under userBase, when the bind account may read
 * `CN=Deleted Objects`; otherwise `deletions: "unsupported"`.
 *
 * OpenLDAP: the cursor holds the agent's clock when the listing started; a
 * delta asks for `modifyTimestamp` at or after it minus `delta.clockSkewMs`
 * (duplicates are possible, losses are not while the clocks agree within that
 * margin). Deletions leave no trace without the accesslog overlay: "unsupported".
 *
 * Cursors are base64url JSON, validated strictly: a malformed one is
 * `invalid_request`; a well-formed one from another source (DC, resource
 * settings) gives a full listing.
 */
import { createHash } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { AndFilter, Control, EqualityFilter, GreaterThanEqualsFilter, type Filter } from 'ldapts';
import type { AccountListingResult, ListAccountsPayload } from '../../protocol/operations.js';
import type { Clock } from '../../util/clock.js';
import { OutpostError } from '../../util/errors.js';
import type { OperationContext } from '../types.js';
import type { LdapSettings } from './config.js';
import { canonicalDN, escapeDnValue, isUnderDN, parseDN } from './dn.js';
import { EntryView, guidToString } from './entries.js';
import { accountAttributes, toAccount } from './listings.js';
import type { LdapPool } from './pool.js';
import { pagedSearch, readEntry } from './search.js';

export const SHOW_DELETED_OID = '1.2.840.113556.1.4.417';

const Cursor = Type.Union([
  Type.Object(
    { v: Type.Literal(1), k: Type.Literal('ad'), src: Type.String({ pattern: '^[0-9a-f]{16}$' }), dc: Type.String({ pattern: '^[0-9a-f-]{36}$' }), usn: Type.String({ pattern: '^[0-9]{1,19}$' }) },
    { additionalProperties: false },
  ),
  Type.Object(
    { v: Type.Literal(1), k: Type.Literal('openldap'), src: Type.String({ pattern: '^[0-9a-f]{16}$' }), t: Type.Integer({ minimum: 0, maximum: 4_102_444_800_000 }) },
    { additionalProperties: false },
  ),
]);
type Cursor = Static<typeof Cursor>;
const checkCursor = TypeCompiler.Compile(Cursor);

export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify(c), 'utf8').toString('base64url');
}

/** Parses a cursor from a payload; anything this connector did not issue is `invalid_request` (never echoed). */
export function decodeCursor(name: string, text: string): Cursor {
  const bad = () => new OutpostError('invalid_request', `ldap ${name}: since is not a cursor from an earlier listAccounts of an LDAP resource`);
  if (!/^[A-Za-z0-9_-]{1,4096}$/.test(text)) throw bad();
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    throw bad();
  }
  if (!checkCursor.Check(value)) throw bad();
  return value;
}

/** What a cursor's source must match: flavor, userBase and userFilter (and the URL on OpenLDAP, which has no DC identity). */
function sourceOf(s: LdapSettings): string {
  const parts = [s.flavor, canonicalDN(s.userBase).toLowerCase(), s.userFilter.toString(), s.flavor === 'openldap' ? s.url : ''];
  return createHash('sha256').update(parts.join('\0')).digest('hex').slice(0, 16);
}

/** GeneralizedTime of a millisecond timestamp, whole seconds, UTC. */
export function generalizedTime(ms: number): string {
  return new Date(Math.max(0, ms)).toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z');
}

interface AdSource {
  dc: string;
  usn: string;
  namingContext: string;
}

/**
 * The DC's identity and its highestCommittedUSN, from the root DSE and the
 * DC's NTDS Settings object; undefined when the bind account cannot read
 * them (then no cursor is issued and every listing is full).
 */
async function adSource(pool: LdapPool, s: LdapSettings, ctx: OperationContext): Promise<AdSource | undefined> {
  const root = await readEntry(pool, ctx.signal, '', ['highestCommittedUSN', 'dsServiceName', 'defaultNamingContext']);
  const v = root ? new EntryView(root) : undefined;
  const usn = v?.first('highestCommittedUSN');
  const service = v?.first('dsServiceName');
  const nc = v?.first('defaultNamingContext');
  if (!usn || !/^\d{1,19}$/.test(usn) || !service || !nc) return undefined;
  let ntds;
  try {
    ntds = await readEntry(pool, ctx.signal, service, ['invocationId'], ['invocationId']);
  } catch (err) {
    if (err instanceof OutpostError && !err.retryable) return undefined;
    throw err;
  }
  const id = ntds ? new EntryView(ntds).buffer('invocationId') : null;
  return id ? { dc: guidToString(id), usn, namingContext: nc } : undefined;
}

/** Whether the bind account may read tombstones (the Deleted Objects container under Show Deleted). */
async function tombstonesReadable(pool: LdapPool, s: LdapSettings, nc: string, ctx: OperationContext): Promise<boolean> {
  try {
    return await pool.use(ctx.signal, 'search', async (c) => {
      const res = await c.search(`CN=Deleted Objects,${nc}`, { scope: 'base', attributes: ['1.1'], derefAliases: 'never' }, new Control(SHOW_DELETED_OID, { critical: true }));
      return res.searchEntries.length === 1;
    });
  } catch (err) {
    if (err instanceof OutpostError && !err.retryable) return false;
    throw err;
  }
}

/** The original DN of a tombstone: its last RDN value under lastKnownParent. */
function tombstoneId(v: EntryView): string | undefined {
  const parent = v.first('lastKnownParent');
  const rdn = v.first('msDS-LastKnownRDN') ?? v.first('name')?.split('\n')[0];
  if (!parent || !rdn) return undefined;
  return canonicalDN(`CN=${escapeDnValue(rdn)},${parent}`);
}

export async function listAccounts(pool: LdapPool, s: LdapSettings, p: ListAccountsPayload, clock: Clock, ctx: OperationContext): Promise<AccountListingResult> {
  const prev = p.since !== undefined ? decodeCursor(s.name, p.since) : undefined;
  const src = sourceOf(s);
  let filter: Filter = s.userFilter;
  let cursor: string | undefined;
  let delta = false;
  let ad: AdSource | undefined;
  let deletions: 'listed' | 'unsupported' = 'unsupported';
  if (s.flavor === 'ad') {
    ad = await adSource(pool, s, ctx);
    if (!ad) {
      ctx.log.warn('ldap: cannot read highestCommittedUSN or the DC invocationId; no delta cursor (full listings only)', { resource: s.name });
    } else {
      cursor = encodeCursor({ v: 1, k: 'ad', src, dc: ad.dc, usn: ad.usn });
      if (prev?.k === 'ad' && prev.src === src && prev.dc === ad.dc) {
        delta = true;
        filter = new AndFilter({ filters: [s.userFilter, new GreaterThanEqualsFilter({ attribute: 'uSNChanged', value: String(BigInt(prev.usn) + 1n) })] });
      }
      if (await tombstonesReadable(pool, s, ad.namingContext, ctx)) deletions = 'listed';
    }
  } else {
    const now = clock.now();
    cursor = encodeCursor({ v: 1, k: 'openldap', src, t: now });
    if (prev?.k === 'openldap' && prev.src === src) {
      delta = true;
      const since = generalizedTime(prev.t - s.deltaClockSkewMs);
      filter = new AndFilter({ filters: [s.userFilter, new GreaterThanEqualsFilter({ attribute: 'modifyTimestamp', value: since })] });
    }
  }
  let records = 0;
  await pagedSearch(
    pool,
    ctx.signal,
    { base: s.userBase, filter, attributes: accountAttributes(s), explicitBufferAttributes: s.flavor === 'ad' ? ['objectGUID'] : [], pageSize: p.pageSize ?? s.pageSize },
    async (entries) => {
      if (!entries.length) return;
      const page = entries.map((e) => toAccount(s, e));
      records += page.length;
      await ctx.writePage(page);
    },
  );
  if (delta && ad && deletions === 'listed' && prev?.k === 'ad') {
    records += await listTombstones(pool, s, ad, prev.usn, p.pageSize ?? s.pageSize, ctx);
  }
  return cursor === undefined ? { records, delta, deletions } : { records, cursor, delta, deletions };
}

/** Deleted user accounts since `usn` whose last parent lies under userBase, as `{id, uid, deleted: true}`. */
async function listTombstones(pool: LdapPool, s: LdapSettings, ad: AdSource, usn: string, pageSize: number, ctx: OperationContext): Promise<number> {
  const userBase = parseDN(s.userBase);
  const filter = new AndFilter({
    filters: [
      new EqualityFilter({ attribute: 'isDeleted', value: 'TRUE' }),
      new EqualityFilter({ attribute: 'objectClass', value: 'user' }),
      new GreaterThanEqualsFilter({ attribute: 'uSNChanged', value: String(BigInt(usn) + 1n) }),
    ],
  });
  let records = 0;
  // Tombstones keep objectClass but lose objectCategory, so userFilter cannot be applied; computers are left out by class.
  await pagedSearch(
    pool,
    ctx.signal,
    {
      base: `CN=Deleted Objects,${ad.namingContext}`,
      scope: 'one',
      filter,
      attributes: ['objectGUID', 'objectClass', 'lastKnownParent', 'msDS-LastKnownRDN', 'name'],
      explicitBufferAttributes: ['objectGUID'],
      pageSize,
      controls: [new Control(SHOW_DELETED_OID, { critical: true })],
    },
    async (entries) => {
      const out: Array<{ id: string; uid: string | null; deleted: true }> = [];
      for (const e of entries) {
        const v = new EntryView(e);
        if (v.all('objectClass').some((x) => x.toLowerCase() === 'computer')) continue;
        const id = tombstoneId(v);
        if (!id) continue;
        try {
          if (!isUnderDN(parseDN(id), userBase)) continue;
        } catch {
          continue;
        }
        const g = v.buffer('objectGUID');
        out.push({ id, uid: g ? guidToString(g) : null, deleted: true });
      }
      if (out.length) {
        records += out.length;
        await ctx.writePage(out);
      }
    },
  );
  return records;
}
