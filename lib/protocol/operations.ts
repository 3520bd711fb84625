import { Type, type Static, type TSchema } from '@sinclair/typebox';

/**
 * Job types and their payloads (DESIGN "Operations"). The agent validates a
 * leased job's payload against these before any connector sees it; an invalid
 * payload is a non-retryable `invalid_request` failure.
 */
const Strict = { additionalProperties: false } as const;

const PrincipalId = Type.String({ minLength: 1, maxLength: 2048 });

export const PingPayload = Type.Object({ delayMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 600_000 })) }, Strict);
export const EmptyPayload = Type.Object({}, Strict);
export const ListAccountsPayload = Type.Object(
  { pageSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })) },
  Strict,
);
export const GrantPayload = Type.Object({ accountId: PrincipalId, entitlementId: PrincipalId }, Strict);
export const SetAccountEnabledPayload = Type.Object({ accountId: PrincipalId, enabled: Type.Boolean() }, Strict);
export const LdapSearchPayload = Type.Object(
  {
    base: Type.Optional(Type.String({ maxLength: 2048 })),
    filter: Type.String({ minLength: 1, maxLength: 4096 }),
    scope: Type.Optional(Type.Union([Type.Literal('base'), Type.Literal('one'), Type.Literal('sub')])),
    attributes: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 100 })),
    sizeLimit: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000_000 })),
  },
  Strict,
);
export const SqlQueryPayload = Type.Object(
  {
    query: Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.-]+$' }),
    params: Type.Optional(
      Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), Type.Union([Type.String(), Type.Number(), Type.Boolean(), Type.Null()])),
    ),
  },
  Strict,
);

export type PingPayload = Static<typeof PingPayload>;
export type ListAccountsPayload = Static<typeof ListAccountsPayload>;
export type GrantPayload = Static<typeof GrantPayload>;
export type SetAccountEnabledPayload = Static<typeof SetAccountEnabledPayload>;
export type LdapSearchPayload = Static<typeof LdapSearchPayload>;
export type SqlQueryPayload = Static<typeof SqlQueryPayload>;

/** The payload schema of every job type. A type not listed here is `unknown_type`. */
export const PAYLOAD_SCHEMAS: Record<string, TSchema> = {
  ping: PingPayload,
  checkResource: EmptyPayload,
  listAccounts: ListAccountsPayload,
  listEntitlements: EmptyPayload,
  listGrants: EmptyPayload,
  grant: GrantPayload,
  revoke: GrantPayload,
  setAccountEnabled: SetAccountEnabledPayload,
  'ldap.search': LdapSearchPayload,
  'sql.query': SqlQueryPayload,
};

/** Types that need no resource: any agent of the pool takes them. */
export const RESOURCELESS_TYPES: ReadonlySet<string> = new Set(['ping']);

// ---- results and output records ---------------------------------------------

export const AccountRecord = Type.Object({
  id: Type.String(),
  uid: Type.Union([Type.String(), Type.Null()]),
  name: Type.Union([Type.String(), Type.Null()]),
  email: Type.Union([Type.String(), Type.Null()]),
  enabled: Type.Boolean(),
  attributes: Type.Record(Type.String(), Type.Unknown()),
});
export type AccountRecord = Static<typeof AccountRecord>;

export const EntitlementRecord = Type.Object({
  id: Type.String(),
  uid: Type.Union([Type.String(), Type.Null()]),
  name: Type.Union([Type.String(), Type.Null()]),
  kind: Type.Union([Type.Literal('group'), Type.Literal('role')]),
  description: Type.Union([Type.String(), Type.Null()]),
});
export type EntitlementRecord = Static<typeof EntitlementRecord>;

export const GrantRecord = Type.Object({ accountId: Type.String(), entitlementId: Type.String() });
export type GrantRecord = Static<typeof GrantRecord>;

/** `{changed}` of grant, revoke and setAccountEnabled. */
export interface ChangeResult {
  changed: boolean;
}
/** The result of a listing: how many records it wrote as output pages. */
export interface ListingResult {
  records: number;
}
/** The result of checkResource. */
export interface CheckResult {
  ok: boolean;
  latencyMs: number;
  details: Record<string, unknown>;
}
