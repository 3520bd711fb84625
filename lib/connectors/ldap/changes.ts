import { Attribute, Change } from 'ldapts';
import type { ChangeResult, GrantPayload, SetAccountEnabledPayload } from '../../protocol/operations.js';
import { OutpostError } from '../../util/errors.js';
import type { OperationContext } from '../types.js';
import type { LdapSettings } from './config.js';
import { EntryView } from './entries.js';
import { ldapResultCode } from './errors.js';
import { UAC_ACCOUNTDISABLE, isEnabled } from './listings.js';
import type { LdapPool } from './pool.js';
import { objectClasses, target } from './targets.js';

/** Which attribute holds a group's members, and what value stands for an account in it. */
interface Membership {
  group: string;
  attribute: 'member' | 'uniqueMember' | 'memberUid';
  value: string;
}

async function membership(pool: LdapPool, s: LdapSettings, p: GrantPayload, ctx: OperationContext): Promise<Membership> {
  const g = await target(pool, s, p.entitlementId, 'entitlementId', 'group', [], ctx);
  const a = await target(pool, s, p.accountId, 'accountId', 'account', ['uid'], ctx);
  const classes = objectClasses(g.entry);
  const group = g.dn;
  const account = a.dn;
  if (classes.has('group') || classes.has('groupofnames')) return { group, attribute: 'member', value: account };
  if (classes.has('groupofuniquenames')) return { group, attribute: 'uniqueMember', value: account };
  const uid = new EntryView(a.entry).first('uid');
  if (!uid) throw new OutpostError('invalid_request', `ldap ${s.name}: the account has no uid for a posixGroup`);
  return { group, attribute: 'memberUid', value: uid };
}

/**
 * Runs one modify. A result-code failure comes back (mapped, with its LDAP
 * code) so that callers can read "already there" as `changed: false`;
 * everything else (socket, abort) is thrown.
 */
async function modify(pool: LdapPool, ctx: OperationContext, dn: string, change: Change): Promise<{ code: number; error: OutpostError } | undefined> {
  try {
    await pool.use(ctx.signal, 'modify', (c) => c.modify(dn, change));
    return undefined;
  } catch (err) {
    const code = err instanceof OutpostError ? ldapResultCode(err.cause) : undefined;
    if (code !== undefined) return { code, error: err as OutpostError };
    throw err;
  }
}

/** True when `value` is in the group (a compare, so that no member list is read). */
async function isMember(pool: LdapPool, ctx: OperationContext, m: Membership): Promise<boolean> {
  return pool.use(ctx.signal, 'compare', (c) => c.compare(m.group, m.attribute, m.value));
}

/**
 * Adds the account to the group. Already a member: `{changed: false}`, from
 * the directory's own answer (20 attributeOrValueExists; AD and Samba may say
 * 68 entryAlreadyExists), so two agents racing cannot both report a change.
 */
export async function grant(pool: LdapPool, s: LdapSettings, p: GrantPayload, ctx: OperationContext): Promise<ChangeResult> {
  const m = await membership(pool, s, p, ctx);
  const change = new Change({ operation: 'add', modification: new Attribute({ type: m.attribute, values: [m.value] }) });
  const failed = await modify(pool, ctx, m.group, change);
  if (!failed) return { changed: true };
  if (failed.code === 20) return { changed: false };
  if (failed.code === 68 && s.flavor === 'ad' && (await isMember(pool, ctx, m))) return { changed: false };
  throw failed.error;
}

/** Removes the account from the group. Not a member: `{changed: false}` (16 noSuchAttribute; AD may say 53). */
export async function revoke(pool: LdapPool, s: LdapSettings, p: GrantPayload, ctx: OperationContext): Promise<ChangeResult> {
  const m = await membership(pool, s, p, ctx);
  const change = new Change({ operation: 'delete', modification: new Attribute({ type: m.attribute, values: [m.value] }) });
  const failed = await modify(pool, ctx, m.group, change);
  if (!failed) return { changed: true };
  if (failed.code === 16) return { changed: false };
  if (failed.code === 53 && s.flavor === 'ad' && !(await isMember(pool, ctx, m))) return { changed: false };
  if (failed.code === 65) {
    throw new OutpostError('conflict', `ldap ${s.name}: the group's object class requires at least one member; cannot remove the last one`);
  }
  throw failed.error;
}

/**
 * AD: flips bit 2 of userAccountControl, read-modify-write, leaving every
 * other bit as it was. OpenLDAP: writes or deletes the disabled attribute
 * (default pwdAccountLockedTime = 000001010000Z, ppolicy's permanent lock).
 */
export async function setAccountEnabled(pool: LdapPool, s: LdapSettings, p: SetAccountEnabledPayload, ctx: OperationContext): Promise<ChangeResult> {
  const attrs = s.flavor === 'ad' ? ['userAccountControl'] : [s.disabledAttribute];
  const { dn, entry } = await target(pool, s, p.accountId, 'accountId', 'account', attrs, ctx);
  const v = new EntryView(entry);
  if (isEnabled(s, v) === p.enabled) return { changed: false };

  let change: Change;
  if (s.flavor === 'ad') {
    const uacText = v.first('userAccountControl');
    if (uacText === null) throw new OutpostError('invalid_request', `ldap ${s.name}: accountId has no userAccountControl (not an account?)`);
    const uac = Number(uacText);
    const next = p.enabled ? uac & ~UAC_ACCOUNTDISABLE : uac | UAC_ACCOUNTDISABLE;
    change = new Change({ operation: 'replace', modification: new Attribute({ type: 'userAccountControl', values: [String(next)] }) });
  } else if (p.enabled) {
    change = new Change({ operation: 'delete', modification: new Attribute({ type: s.disabledAttribute, values: [] }) });
  } else {
    change = new Change({ operation: 'replace', modification: new Attribute({ type: s.disabledAttribute, values: [s.disabledValue] }) });
  }
  const failed = await modify(pool, ctx, dn, change);
  if (!failed) return { changed: true };
  // Someone else enabled it between our read and our write.
  if (failed.code === 16 && p.enabled) return { changed: false };
  throw failed.error;
}
