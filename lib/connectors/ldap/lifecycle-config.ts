/**
 * The `accounts` block of an LDAP resource: how createAccount names and
 * fills a new entry, which attributes jobs may write, and what deleteAccount
 * does. Checked once at startup; every problem is a `config_error` naming the key.
 */
import { Type, type Static } from '@sinclair/typebox';
import { OutpostError } from '../../util/errors.js';
import { attributeType } from './attributes.js';
import { DnSyntaxError, formatDN, isUnderDN, parseDN, type Rdn } from './dn.js';

const Strict = { additionalProperties: false } as const;
const AttrName = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z][A-Za-z0-9-]*$' });
const Dn = Type.String({ minLength: 1, maxLength: 2048 });

export const AccountsSchema = Type.Object(
  {
    create: Type.Optional(
      Type.Object(
        {
          /** Where new accounts are created. Default `userBase`. Must lie under `userBase` (so the account is listed). */
          container: Type.Optional(Dn),
          /** The RDN attribute of a new entry; its value is `account.name`. Default AD `cn`, OpenLDAP `uid`. */
          namingAttribute: Type.Optional(AttrName),
          /**
           * objectClass values of a new entry. Default AD `top, person, organizationalPerson, user`;
           * OpenLDAP `top, person, organizationalPerson, inetOrgPerson`. They must make the entry match `userFilter`.
           */
          objectClasses: Type.Optional(Type.Array(AttrName, { minItems: 1, maxItems: 20 })),
          /**
           * Which attribute takes which payload field. Default `name`: AD `sAMAccountName`, OpenLDAP `uid`;
           * `email`: `mail`; `givenName`: `givenName`; `surname`: `sn`; `displayName`: `displayName`.
           */
          attributeMap: Type.Optional(
            Type.Object(
              {
                name: Type.Optional(AttrName),
                email: Type.Optional(AttrName),
                givenName: Type.Optional(AttrName),
                surname: Type.Optional(AttrName),
                displayName: Type.Optional(AttrName),
              },
              Strict,
            ),
          ),
          /** AD: `userPrincipalName` is `name@upnSuffix`. Default the DNS name of baseDN's DC= parts (`corp.example`). */
          upnSuffix: Type.Optional(Type.String({ minLength: 1, maxLength: 253, pattern: '^[A-Za-z0-9][A-Za-z0-9.-]*$' })),
        },
        Strict,
      ),
    ),
    /**
     * Attributes createAccount's `attributes` and updateAccount may write (case-insensitive). Default none.
     * Never a password attribute, objectClass, the naming attribute, or the built-in protected list (PROTECTED_ATTRIBUTES).
     */
    writableAttributes: Type.Optional(Type.Array(AttrName, { maxItems: 200 })),
    delete: Type.Optional(
      Type.Object(
        {
          /** `delete` (default) removes the entry; `disable-and-move` disables it and moves it under `targetDN`. */
          mode: Type.Optional(Type.Union([Type.Literal('delete'), Type.Literal('disable-and-move')])),
          /** With `disable-and-move`: the container (an OU) under baseDN that receives deleted accounts. */
          targetDN: Type.Optional(Dn),
        },
        Strict,
      ),
    ),
  },
  Strict,
);
export type AccountsConfig = Static<typeof AccountsSchema>;

/**
 * Attributes no job may write whatever `writableAttributes` says: they grant
 * access (membership, primary group, delegation, credentials), hold the
 * account state that setAccountEnabled owns, or are identity keys.
 */
export const PROTECTED_ATTRIBUTES: ReadonlySet<string> = new Set(
  [
    'objectClass', 'objectCategory', 'member', 'memberOf', 'uniqueMember', 'memberUid', 'primaryGroupID',
    'userAccountControl', 'pwdLastSet', 'sIDHistory', 'objectSid', 'objectGUID', 'entryUUID', 'nTSecurityDescriptor',
    'servicePrincipalName', 'msDS-AllowedToDelegateTo', 'msDS-AllowedToActOnBehalfOfOtherIdentity', 'msDS-KeyCredentialLink',
    'altSecurityIdentities', 'adminCount', 'sAMAccountName', 'userPrincipalName', 'sAMAccountType', 'uidNumber', 'gidNumber',
    'pwdAccountLockedTime', 'pwdReset', 'pwdPolicySubentry', 'pwdChangedTime', 'lockoutTime', 'accountExpires', 'userCertificate',
  ].map((a) => a.toLowerCase()),
);

export interface AccountSettings {
  container: string;
  containerRdns: Rdn[];
  namingAttribute: string;
  objectClasses: string[];
  map: { name: string; email: string; givenName: string; surname: string; displayName: string };
  upnSuffix: string;
  /** Lower-case attribute types jobs may write. */
  writable: ReadonlySet<string>;
  deleteMode: 'delete' | 'disable-and-move';
  targetDN: string | undefined;
  targetRdns: Rdn[] | undefined;
}

/** Why `attribute` may never be written by a job, or undefined. */
export function writeRefusal(a: AccountSettings, attribute: string, isPassword: (a: string) => boolean): string | undefined {
  const t = attributeType(attribute);
  if (isPassword(t)) return 'is a password attribute (use setPassword)';
  if (t === 'objectclass') return 'is objectClass, which jobs never change';
  if (t === a.namingAttribute.toLowerCase()) return 'is the naming attribute (the DN would change)';
  if (PROTECTED_ATTRIBUTES.has(t)) return 'is protected (membership, account state, credentials or identity keys)';
  if (!a.writable.has(t)) return 'is not in accounts.writableAttributes';
  return undefined;
}

export function parseAccounts(
  at: (key: string) => string,
  raw: AccountsConfig | undefined,
  ctx: { flavor: 'ad' | 'openldap'; base: Rdn[]; userBase: Rdn[]; isPassword: (a: string) => boolean },
): AccountSettings {
  const ad = ctx.flavor === 'ad';
  const dn = (key: string, value: string): Rdn[] => {
    try {
      const r = parseDN(value);
      if (!r.length) throw new DnSyntaxError('an empty DN');
      return r;
    } catch (err) {
      throw new OutpostError('config_error', `${at(key)}: not a valid DN (${(err as Error).message})`);
    }
  };
  const c = raw?.create ?? {};
  const containerRdns = c.container ? dn('accounts.create.container', c.container) : ctx.userBase;
  if (!isUnderDN(containerRdns, ctx.userBase)) throw new OutpostError('config_error', `${at('accounts.create.container')}: must lie under userBase`);
  const m = c.attributeMap ?? {};
  const settings: AccountSettings = {
    container: formatDN(containerRdns),
    containerRdns,
    namingAttribute: c.namingAttribute ?? (ad ? 'cn' : 'uid'),
    objectClasses: c.objectClasses ?? (ad ? ['top', 'person', 'organizationalPerson', 'user'] : ['top', 'person', 'organizationalPerson', 'inetOrgPerson']),
    map: {
      name: m.name ?? (ad ? 'sAMAccountName' : 'uid'),
      email: m.email ?? 'mail',
      givenName: m.givenName ?? 'givenName',
      surname: m.surname ?? 'sn',
      displayName: m.displayName ?? 'displayName',
    },
    upnSuffix:
      c.upnSuffix ??
      ctx.base
        .flatMap((r) => (r.length === 1 && r[0]?.type.toLowerCase() === 'dc' ? [r[0].value] : []))
        .join('.'),
    writable: new Set((raw?.writableAttributes ?? []).map((a) => a.toLowerCase())),
    deleteMode: raw?.delete?.mode ?? 'delete',
    targetDN: undefined,
    targetRdns: undefined,
  };
  for (const a of raw?.writableAttributes ?? []) {
    const why = writeRefusal({ ...settings, writable: new Set([a.toLowerCase()]) }, a, ctx.isPassword);
    if (why) throw new OutpostError('config_error', `${at('accounts.writableAttributes')}: ${a} ${why}`);
  }
  if (settings.deleteMode === 'disable-and-move') {
    if (!raw?.delete?.targetDN) throw new OutpostError('config_error', `${at('accounts.delete.targetDN')}: is required with mode disable-and-move`);
    const t = dn('accounts.delete.targetDN', raw.delete.targetDN);
    if (!isUnderDN(t, ctx.base) || t.length === ctx.base.length) throw new OutpostError('config_error', `${at('accounts.delete.targetDN')}: must lie under baseDN`);
    settings.targetRdns = t;
    settings.targetDN = formatDN(t);
  }
  return settings;
}
