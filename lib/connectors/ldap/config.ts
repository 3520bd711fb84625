import { readFileSync } from 'node:fs';
import { Type, type Static } from '@sinclair/typebox';
import type { Filter } from 'ldapts';
import { compileResourceSchema, freezeOptions, IntIn, resolvePassword, SecretFields, Strict, type SecretDeps } from '../../config/resource.js';
import { OutpostError } from '../../util/errors.js';
import { compileEntitlements, compileGlobs, EntitlementsSchema, MAX_PATTERN_LENGTH, type EntitlementRules } from '../entitlements.js';
import { AttributePolicy } from './attributes.js';
import { DnSyntaxError, isUnderDN, parseDN, parseFilterStrict, type Rdn } from './dn.js';
import { AccountsSchema, parseAccounts, type AccountSettings } from './lifecycle-config.js';

const AttrName = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9][A-Za-z0-9;.-]*$' });

/**
 * A `kind: "ldap"` resource of the agent config. Only `url`, `bindDN`, a
 * password and `baseDN` are required; everything else has a default per
 * `flavor`.
 */
export const LdapResourceSchema = Type.Object(
  {
    kind: Type.Optional(Type.Literal('ldap')),
    /** `ldap://host[:389]` or `ldaps://host[:636]`. */
    url: Type.String({ pattern: '^ldaps?://[^/?#\\s]+/?$' }),
    /** Upgrade an `ldap://` connection with StartTLS before binding. Default false. */
    startTls: Type.Optional(Type.Boolean()),
    /** The service account's DN; with `flavor: "ad"` also `svc@corp.example` (UPN) or `CORP\\svc`. */
    bindDN: Type.String({ minLength: 1, maxLength: 2048 }),
    /**
     * The bind password: exactly one of `passwordFile` (re-read for every new connection, so a rotated
     * secret works without a restart), `passwordEnv` or `password` (lib/config/resource.ts SecretFields).
     */
    ...SecretFields,
    /** Nothing outside this subtree is ever read or written. */
    baseDN: Type.String({ minLength: 1, maxLength: 2048 }),
    /** `openldap` (default) or `ad`: account state, uid attribute, group classes, ranged retrieval. */
    flavor: Type.Optional(Type.Union([Type.Literal('ad'), Type.Literal('openldap')])),
    /** Where accounts live; default `baseDN`. Must lie under `baseDN`. */
    userBase: Type.Optional(Type.String({ minLength: 1, maxLength: 2048 })),
    /** Where groups live; default `baseDN`. Must lie under `baseDN`. */
    groupBase: Type.Optional(Type.String({ minLength: 1, maxLength: 2048 })),
    /** Default AD `(&(objectCategory=person)(objectClass=user))`, OpenLDAP `(objectClass=inetOrgPerson)`. */
    userFilter: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
    /** Default AD `(objectClass=group)`, OpenLDAP groupOfNames, groupOfUniqueNames or posixGroup. */
    groupFilter: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
    /** Entries per paged-results page. Default 500. */
    pageSize: Type.Optional(IntIn(1, 10_000)),
    /** Per LDAP request (each page counts as one). Default 30 000 ms. */
    timeoutMs: Type.Optional(IntIn(1, 3_600_000)),
    /** TCP (and TLS) connect. Default 10 000 ms. */
    connectTimeoutMs: Type.Optional(IntIn(1, 600_000)),
    tls: Type.Optional(
      Type.Object(
        {
          /** PEM file of the CA(s) to trust, in addition to none: the system store is used when absent. */
          caFile: Type.Optional(Type.String({ minLength: 1 })),
          /** Name expected in the server certificate when it differs from the URL's host. */
          serverName: Type.Optional(Type.String({ minLength: 1 })),
        },
        Strict,
      ),
    ),
    /** Pooled, bound connections. Default 4. */
    maxConnections: Type.Optional(IntIn(1, 64)),
    /**
     * A pooled connection idle longer than this is closed rather than reused:
     * firewalls and AD (MaxConnIdleTime 900 s) drop idle connections, often
     * without a FIN. Default 300 000 ms.
     */
    idleTimeoutMs: Type.Optional(IntIn(1000, 86_400_000)),
    /** Values per ranged read of a large AD group (`member;range=0-1499`). Default 1 500, AD's MaxValRange. */
    rangeSize: Type.Optional(IntIn(1, 100_000)),
    /** Extra attributes copied into `attributes` of account records. */
    accountAttributes: Type.Optional(Type.Array(AttrName, { maxItems: 50 })),
    /**
     * Which groups jobs may see and change, by their DN as listEntitlements
     * reports it (glob patterns, case-insensitive; lib/connectors/entitlements.ts).
     * Default: every group under groupBase matching groupFilter.
     */
    entitlements: Type.Optional(EntitlementsSchema),
    search: Type.Optional(
      Type.Object(
        {
          /**
           * The attributes `ldap.search` may return, and so name in its filter
           * (objectClass is always included). Default: any attribute that is not a password attribute.
           */
          attributes: Type.Optional(Type.Array(AttrName, { maxItems: 500 })),
          /**
           * Password attributes besides the built-in ones (userPassword, unicodePwd,
           * ms-Mcs-AdmPwd, msLAPS-* …): never returned, never named in a filter. Glob patterns, case-insensitive.
           */
          forbiddenAttributes: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: MAX_PATTERN_LENGTH }), { maxItems: 200 })),
        },
        Strict,
      ),
    ),
    /** The account lifecycle (createAccount, updateAccount, deleteAccount, setPassword); lifecycle-config.ts. */
    accounts: Type.Optional(AccountsSchema),
    /** Delta listings (`listAccounts {since}`). */
    delta: Type.Optional(
      Type.Object(
        {
          /**
           * OpenLDAP: a delta asks for `modifyTimestamp` at or after the cursor's time
           * (the agent's clock when the earlier listing started) minus this margin,
           * covering clock skew between agent and server and the timestamp's
           * one-second granularity. Default 300 000 ms. Unused on AD (uSNChanged).
           */
          clockSkewMs: Type.Optional(IntIn(0, 86_400_000)),
        },
        Strict,
      ),
    ),
    nested: Type.Optional(
      Type.Object(
        {
          /**
           * `listGrants {nested: true}` keeps the group graph (DNs and group-to-group
           * edges, never account memberships) in memory; more groups than this
           * fail with `too_large`. Default 100 000 (~23 MB measured at ~230 bytes a group).
           */
          maxGroups: Type.Optional(IntIn(1, 1_000_000)),
        },
        Strict,
      ),
    ),
    openldap: Type.Optional(
      Type.Object(
        {
          /** Present means disabled. Default `pwdAccountLockedTime` (ppolicy). */
          disabledAttribute: Type.Optional(AttrName),
          /** Value written to disable. Default `000001010000Z` (ppolicy: locked until an admin unlocks). */
          disabledValue: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
        },
        Strict,
      ),
    ),
  },
  Strict,
);
export type LdapResourceConfig = Static<typeof LdapResourceSchema>;

/** The config with defaults applied, DNs parsed and the filters compiled. */
export interface LdapSettings {
  name: string;
  url: string;
  secure: boolean;
  startTls: boolean;
  host: string;
  bindDN: string;
  /** Returns the current password (re-reads the file: rotated secrets work without a restart). */
  password(): string;
  baseDN: string;
  base: Rdn[];
  flavor: 'ad' | 'openldap';
  userBase: string;
  groupBase: string;
  userFilter: Filter;
  groupFilter: Filter;
  pageSize: number;
  timeoutMs: number;
  connectTimeoutMs: number;
  ca: Buffer | undefined;
  serverName: string | undefined;
  maxConnections: number;
  idleTimeoutMs: number;
  rangeSize: number;
  accountAttributes: string[];
  /** What an account record's `attributes` carry (cn, displayName, givenName, sn, AD's userPrincipalName, then accountAttributes), password attributes left out: decided once here, not per entry. */
  recordAttributes: readonly string[];
  disabledAttribute: string;
  disabledValue: string;
  /** The compiled `entitlements` allow-list (group DNs). */
  entitlements: EntitlementRules;
  /** What `ldap.search` may return and filter on. */
  attributes: AttributePolicy;
  /** The account lifecycle settings (`accounts`). */
  accounts: AccountSettings;
  /** `delta.clockSkewMs`. */
  deltaClockSkewMs: number;
  /** `nested.maxGroups`. */
  nestedMaxGroups: number;
}

const compiled = compileResourceSchema(LdapResourceSchema);

const DEFAULT_FILTERS = {
  ad: { user: '(&(objectCategory=person)(objectClass=user))', group: '(objectClass=group)' },
  openldap: {
    user: '(objectClass=inetOrgPerson)',
    group: '(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))',
  },
} as const;

/**
 * Validates one `resources.<name>` entry against the schema compiled once,
 * applies the defaults documented on its keys and returns frozen settings.
 * Every problem is a `config_error` naming `resources.<name>.<key>`; the
 * password is read (and registered for redaction) but never shown.
 */
export function parseLdapConfig(name: string, raw: Record<string, unknown>, deps: SecretDeps): Readonly<LdapSettings> {
  const at = (key: string) => `resources.${name}.${key}`;
  const c = compiled.check(name, raw);
  const url = new URL(c.url);
  const secure = url.protocol === 'ldaps:';
  if (secure && c.startTls) throw new OutpostError('config_error', `${at('startTls')}: StartTLS needs an ldap:// URL`);

  const dn = (key: string, value: string): Rdn[] => {
    try {
      const rdns = parseDN(value);
      if (rdns.length === 0) throw new DnSyntaxError('an empty DN');
      return rdns;
    } catch (err) {
      throw new OutpostError('config_error', `${at(key)}: not a valid DN (${(err as Error).message})`);
    }
  };
  const flavor = c.flavor ?? 'openldap';
  // AD also binds by user principal name or down-level logon name.
  if (!(flavor === 'ad' && /^[^=,\s]+(@[^=,\s]+|\\[^=,\\\s]+)$/.test(c.bindDN))) dn('bindDN', c.bindDN);
  const base = dn('baseDN', c.baseDN);
  for (const key of ['userBase', 'groupBase'] as const) {
    const v = c[key];
    if (v !== undefined && !isUnderDN(dn(key, v), base)) throw new OutpostError('config_error', `${at(key)}: must lie under baseDN`);
  }
  const filter = (key: string, value: string): Filter => {
    try {
      return parseFilterStrict(value);
    } catch {
      throw new OutpostError('config_error', `${at(key)}: not a valid LDAP filter`);
    }
  };

  try {
    compileGlobs(c.search?.forbiddenAttributes ?? []);
  } catch (err) {
    throw new OutpostError('config_error', `${at('search.forbiddenAttributes')}: ${(err as Error).message}`);
  }

  const password = resolvePassword(at, '', c, deps, { required: true });
  if (password === undefined) throw new OutpostError('config_error', `${at('bindPassword')}: is required`);
  let ca: Buffer | undefined;
  if (c.tls?.caFile) {
    try {
      ca = readFileSync(c.tls.caFile);
    } catch (err) {
      throw new OutpostError('config_error', `${at('tls.caFile')}: cannot read ${c.tls.caFile} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  const userBase = c.userBase ?? c.baseDN;
  const policy = new AttributePolicy(c.search?.attributes, c.search?.forbiddenAttributes);
  const accounts = parseAccounts(at, c.accounts, { flavor, base, userBase: dn('userBase', userBase), isPassword: (a) => policy.forbidden(a) });
  return freezeOptions({
    name,
    url: c.url,
    secure,
    startTls: c.startTls ?? false,
    host: url.hostname.replace(/^\[|\]$/g, ''),
    bindDN: c.bindDN,
    password,
    baseDN: c.baseDN,
    base,
    flavor,
    userBase: c.userBase ?? c.baseDN,
    groupBase: c.groupBase ?? c.baseDN,
    userFilter: filter('userFilter', c.userFilter ?? DEFAULT_FILTERS[flavor].user),
    groupFilter: filter('groupFilter', c.groupFilter ?? DEFAULT_FILTERS[flavor].group),
    pageSize: c.pageSize ?? 500,
    timeoutMs: c.timeoutMs ?? 30_000,
    connectTimeoutMs: c.connectTimeoutMs ?? 10_000,
    ca,
    serverName: c.tls?.serverName,
    maxConnections: c.maxConnections ?? 4,
    idleTimeoutMs: c.idleTimeoutMs ?? 300_000,
    rangeSize: c.rangeSize ?? 1500,
    accountAttributes: c.accountAttributes ?? [],
    recordAttributes: ['cn', 'displayName', 'givenName', 'sn', ...(flavor === 'ad' ? ['userPrincipalName'] : []), ...(c.accountAttributes ?? [])].filter((a) => !policy.forbidden(a)),
    disabledAttribute: c.openldap?.disabledAttribute ?? 'pwdAccountLockedTime',
    disabledValue: c.openldap?.disabledValue ?? '000001010000Z',
    entitlements: compileEntitlements(name, c.entitlements, { caseInsensitive: true }),
    attributes: policy,
    accounts,
    deltaClockSkewMs: c.delta?.clockSkewMs ?? 300_000,
    nestedMaxGroups: c.nested?.maxGroups ?? 100_000,
  });
}
