/**
 * The account lifecycle: getAccount, createAccount, updateAccount,
 * deleteAccount. Every write goes through targets.ts first (an entry
 * listAccounts would list, never the base, a container, a group or the
 * agent's own account); refusals are non-retryable `forbidden` naming the
 * rule, and no payload value is echoed.
 */
import { AndFilter, Attribute, Change, EqualityFilter } from 'ldapts';
import type { AccountIdPayload, AccountRecord, ChangeResult, CreateAccountPayload, CreateAccountResult, UpdateAccountPayload } from '../../protocol/operations.js';
import { OutpostError } from '../../util/errors.js';
import type { OperationContext } from '../types.js';
import { attributeType } from './attributes.js';
import type { LdapSettings } from './config.js';
import { canonicalDN, formatDN, isUnderDN, parseDN } from './dn.js';
import { EntryView } from './entries.js';
import { ldapResultCode } from './errors.js';
import { writeRefusal } from './lifecycle-config.js';
import { accountAttributes, isEnabled, toAccount, UAC_ACCOUNTDISABLE } from './listings.js';
import { assertTlsSocket, passwordModify, requireEncrypted, unicodePwd, withPassword } from './passwords.js';
import type { LdapPool } from './pool.js';
import { readEntry } from './search.js';
import { target } from './targets.js';

const UAC_NORMAL_ACCOUNT = 0x200;
/** sAMAccountName: at most 20 characters, none of these (AD refuses them anyway; said here without a round trip). */
const SAM_BAD = /["/\\[\]:;|=,+*?<>@]/;

/** Runs one write; a result-code failure comes back with its LDAP code, everything else is thrown. */
async function attempt(fn: () => Promise<void>): Promise<{ code: number; error: OutpostError } | undefined> {
  try {
    await fn();
    return undefined;
  } catch (err) {
    const code = err instanceof OutpostError ? ldapResultCode(err.cause) : undefined;
    if (code !== undefined) return { code, error: err as OutpostError };
    throw err;
  }
}

export async function getAccount(pool: LdapPool, s: LdapSettings, p: AccountIdPayload, ctx: OperationContext): Promise<AccountRecord> {
  const { entry } = await target(pool, s, p.accountId, 'accountId', 'account', accountAttributes(s), ctx, {
    buffers: s.flavor === 'ad' ? ['objectGUID'] : [],
    read: true,
    outsideForbidden: true,
  });
  return toAccount(s, entry);
}

/** The DN of an existing account with this name (accounts.create.attributeMap.name) under userBase, if any. */
async function findByName(pool: LdapPool, s: LdapSettings, name: string, ctx: OperationContext): Promise<string | undefined> {
  const filter = new AndFilter({ filters: [s.userFilter, new EqualityFilter({ attribute: s.accounts.map.name, value: name })] });
  return pool.use(ctx.signal, 'search', async (c) => {
    const res = await c.search(s.userBase, { scope: 'sub', filter, attributes: ['1.1'], derefAliases: 'never', sizeLimit: 2 });
    return res.searchEntries[0] ? canonicalDN(res.searchEntries[0].dn) : undefined;
  });
}

/** Checks `attributes` of a payload against the write rules; returns them as [type, values] pairs. */
function writable(s: LdapSettings, attrs: Record<string, string | string[] | null>, rdnTypes: readonly string[] = []): Array<[string, string[]]> {
  const seen = new Set<string>();
  const out: Array<[string, string[]]> = [];
  for (const [key, value] of Object.entries(attrs)) {
    const t = attributeType(key);
    if (seen.has(t)) throw new OutpostError('invalid_request', `ldap ${s.name}: attributes names one attribute twice (names compare case-insensitively)`);
    seen.add(t);
    const why = rdnTypes.includes(t) ? 'is the naming attribute (the DN would change)' : writeRefusal(s.accounts, key, (a) => s.attributes.forbidden(a));
    if (why) throw new OutpostError('forbidden', `ldap ${s.name}: attributes names an attribute that ${why}`);
    out.push([key, value === null ? [] : [...new Set(Array.isArray(value) ? value : [value])]]);
  }
  return out;
}

/**
 * Creates the account at `<namingAttribute>=<name>,<accounts.create.container>`.
 * An account with the same name under userBase already: `{changed: false}`
 * with its id (nothing is changed, not even the password). AD: created
 * disabled (UAC 514) unless a password is given, which goes into the same add
 * (UAC 512, or 514 with `enabled: false`), so a password the domain refuses
 * leaves no account behind. OpenLDAP: added, then Password Modify; a failed
 * password removes the new entry again.
 */
export async function createAccount(
  pool: LdapPool,
  s: LdapSettings,
  p: CreateAccountPayload & { password?: unknown },
  ctx: OperationContext,
): Promise<CreateAccountResult> {
  const a = p.account;
  const A = s.accounts;
  const ad = s.flavor === 'ad';
  if (p.password !== undefined && (typeof p.password !== 'string' || !p.password)) {
    throw new OutpostError('invalid_request', `ldap ${s.name}: password must arrive opened as a non-empty string`);
  }
  const password = p.password;
  if (password !== undefined) requireEncrypted(s, 'createAccount with a password');
  if (ad && (a.name.length > 20 || SAM_BAD.test(a.name) || a.name.endsWith('.') ||
      // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused here
      /[\0-\x1f]/.test(a.name))) {
    throw new OutpostError('invalid_request', `ldap ${s.name}: account.name is not a valid sAMAccountName (at most 20 characters, none of " / \\ [ ] : ; | = , + * ? < > @, not ending in a dot)`);
  }
  if (ad && a.enabled === true && password === undefined) {
    throw new OutpostError('invalid_request', `ldap ${s.name}: account.enabled true needs a password (AD creates accounts without one disabled)`);
  }
  const extra = writable(s, a.attributes ?? {}, [A.namingAttribute.toLowerCase()]);

  const existing = await findByName(pool, s, a.name, ctx);
  if (existing) return { changed: false, accountId: existing };

  const dn = formatDN([[{ type: A.namingAttribute, value: a.name }], ...A.containerRdns]);
  const values = new Map<string, Array<string | Buffer>>();
  const set = (type: string, v: string | Buffer | undefined) => {
    if (v === undefined) return;
    const key = [...values.keys()].find((k) => k.toLowerCase() === type.toLowerCase()) ?? type;
    if (!values.has(key)) values.set(key, [v]);
  };
  values.set('objectClass', A.objectClasses);
  set(A.namingAttribute, a.name);
  set(A.map.name, a.name);
  set(A.map.email, a.email);
  set(A.map.givenName, a.givenName);
  set(A.map.surname, a.surname);
  set(A.map.displayName, a.displayName);
  for (const [type, v] of extra) {
    if ([...values.keys()].some((k) => k.toLowerCase() === type.toLowerCase())) {
      throw new OutpostError('invalid_request', `ldap ${s.name}: account.attributes names an attribute the account's own fields already set (attributeMap)`);
    }
    if (v.length) values.set(type, v);
  }
  if (ad) {
    set('userPrincipalName', `${a.name}@${A.upnSuffix}`);
    const disabled = password === undefined || a.enabled === false;
    set('userAccountControl', String(UAC_NORMAL_ACCOUNT | (disabled ? UAC_ACCOUNTDISABLE : 0)));
    if (password !== undefined) set('unicodePwd', unicodePwd(password));
  } else {
    // person requires cn and sn.
    set('cn', a.displayName ?? ([a.givenName, a.surname].filter(Boolean).join(' ') || a.name));
    set('sn', a.surname ?? a.name);
    if (a.enabled === false) set(s.disabledAttribute, s.disabledValue);
  }
  const attributes = [...values].map(([type, v]) => new Attribute({ type, values: v as string[] }));
  const add = () =>
    pool.use(ctx.signal, 'modify', async (c) => {
      if (ad && password !== undefined) assertTlsSocket(s, c);
      await c.add(dn, attributes);
    });
  const failed = await attempt(() => (password !== undefined ? withPassword(s, password, 'createAccount', add) : add()));
  if (failed?.code === 68) {
    // Created meanwhile (a retry or another agent), or a different entry holds the DN.
    const again = await findByName(pool, s, a.name, ctx);
    if (again) return { changed: false, accountId: again };
    throw new OutpostError('conflict', `ldap ${s.name}: an entry with the new account's DN exists and is not an account of that name`);
  }
  if (failed) throw failed.error;

  const undo = () => pool.use(ctx.signal, 'modify', (c) => c.del(dn)).catch(() => undefined);
  if (!ad && password !== undefined) {
    try {
      await passwordModify(pool, s, dn, password, ctx);
    } catch (err) {
      await undo();
      throw err;
    }
  }
  // The entry must be one listAccounts lists; otherwise no later job could reach it.
  const created = await readEntry(pool, ctx.signal, dn, ['1.1'], [], s.userFilter);
  if (!created) {
    await undo();
    throw new OutpostError('config_error', `ldap ${s.name}: a new account does not match userFilter; fix resources.${s.name}.accounts.create.objectClasses`);
  }
  // The id as listAccounts spells it (the server's DN, canonical escaping).
  return { changed: true, accountId: canonicalDN(created.dn || dn) };
}

/** Replaces allow-listed attributes; values equal to the current ones (as sets) change nothing. */
export async function updateAccount(pool: LdapPool, s: LdapSettings, p: UpdateAccountPayload, ctx: OperationContext): Promise<ChangeResult> {
  let rdnTypes: string[] = [];
  try {
    rdnTypes = (parseDN(p.accountId)[0] ?? []).map((x) => x.type.toLowerCase());
  } catch {
    // target() says what is wrong with the DN
  }
  const wanted = writable(s, p.attributes, rdnTypes);
  if (!wanted.length) return { changed: false };
  const { dn, entry } = await target(pool, s, p.accountId, 'accountId', 'account', wanted.map(([t]) => t), ctx, { outsideForbidden: true });
  const v = new EntryView(entry);
  const changes: Change[] = [];
  for (const [type, values] of wanted) {
    const current = new Set(v.all(type));
    if (current.size === values.length && values.every((x) => current.has(x))) continue;
    changes.push(new Change({ operation: 'replace', modification: new Attribute({ type, values }) }));
  }
  if (!changes.length) return { changed: false };
  await pool.use(ctx.signal, 'modify', (c) => c.modify(dn, changes));
  return { changed: true };
}

/**
 * `delete` mode removes the entry; `disable-and-move` disables it (UAC bit 2,
 * or the OpenLDAP disabled attribute) and moves it under accounts.delete.targetDN.
 * Absent (or already disabled there): `{changed: false}`.
 */
export async function deleteAccount(pool: LdapPool, s: LdapSettings, p: AccountIdPayload, ctx: OperationContext): Promise<ChangeResult> {
  const attrs = s.flavor === 'ad' ? ['userAccountControl'] : [s.disabledAttribute];
  let found;
  try {
    found = await target(pool, s, p.accountId, 'accountId', 'account', attrs, ctx, { outsideForbidden: true });
  } catch (err) {
    if (err instanceof OutpostError && err.code === 'not_found') return { changed: false };
    throw err;
  }
  const { dn, entry } = found;
  if (s.accounts.deleteMode === 'delete') {
    const failed = await attempt(() => pool.use(ctx.signal, 'modify', (c) => c.del(dn)));
    if (failed?.code === 32) return { changed: false };
    if (failed) throw failed.error;
    return { changed: true };
  }
  const v = new EntryView(entry);
  let changed = false;
  if (isEnabled(s, v)) {
    const change =
      s.flavor === 'ad'
        ? new Change({ operation: 'replace', modification: new Attribute({ type: 'userAccountControl', values: [String(Number(v.first('userAccountControl') ?? UAC_NORMAL_ACCOUNT) | UAC_ACCOUNTDISABLE)] }) })
        : new Change({ operation: 'replace', modification: new Attribute({ type: s.disabledAttribute, values: [s.disabledValue] }) });
    await pool.use(ctx.signal, 'modify', (c) => c.modify(dn, change));
    changed = true;
  }
  const rdns = parseDN(dn);
  const target_ = s.accounts.targetRdns;
  // lifecycle-config.ts sets it for disable-and-move, the one mode that gets here.
  if (!target_) throw new OutpostError('config_error', `ldap ${s.name}: accounts.delete.targetDN is required with mode disable-and-move`);
  if (!(isUnderDN(rdns, target_) && rdns.length === target_.length + 1)) {
    const [leaf] = rdns;
    if (!leaf) throw new OutpostError('internal', `ldap ${s.name}: an account with an empty DN`);
    const newDN = formatDN([leaf, ...target_]);
    await pool.use(ctx.signal, 'modify', (c) => c.modifyDN(dn, newDN));
    changed = true;
  }
  return { changed };
}
