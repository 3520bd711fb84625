import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { OutpostError } from './errors.js';
import { assertValid } from './validate.js';

/**
 * Job types and their payloads (DESIGN "Operations"). The agent validates a
 * leased job's payload against these before any connector sees it; an invalid
 * payload is a non-retryable `invalid_request` failure.
 */
const Strict = { additionalProperties: false } as const;

const PrincipalId = Type.String({ minLength: 1, maxLength: 2048 });

export const PingPayload = Type.Object({ delayMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 600_000 })) }, Strict);
export const EmptyPayload = Type.Object({}, Strict);
/**
 * A delta cursor from an earlier listing's result (`cursor`): opaque to the
 * cloud, made and checked by the connector (a cursor from another source, e.g.
 * another domain controller, forces a full listing).
 */
const DeltaCursor = Type.String({ minLength: 1, maxLength: 4096 });
export const ListAccountsPayload = Type.Object(
  { pageSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })), since: Type.Optional(DeltaCursor) },
  Strict,
);
export const ListGrantsPayload = Type.Object({ nested: Type.Optional(Type.Boolean()) }, Strict);
export const AccountIdPayload = Type.Object({ accountId: PrincipalId }, Strict);

/**
 * A secret in a payload (a password): `{sealed}`, a libsodium sealed box
 * (crypto_box_seal, base64) made with the pool's public key, which only the
 * pool's agents can open; or a plain string, refused unless the resource sets
 * `allowUnsealedSecrets: true`. The proxy wipes secret fields from the stored
 * payload when the job ends.
 */
export const SecretValue = Type.Union([
  Type.Object({ sealed: Type.String({ minLength: 1, maxLength: 8192, pattern: '^[A-Za-z0-9+/_=-]+$' }) }, Strict),
  Type.String({ minLength: 1, maxLength: 1024 }),
]);
/**
 * The payload fields of each job type that hold a `SecretValue`: the agent
 * opens them in memory (lib/agent/dispatch.ts) and the proxy wipes them from
 * the stored payload when the job ends (lib/proxy/store/wipe.ts). Top-level
 * field names only.
 */
export const SECRET_FIELDS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  createAccount: Object.freeze(['password']),
  setPassword: Object.freeze(['password']),
});
/** Attribute values a write may set: a string, several, or null to clear. */
const AttributeValues = Type.Record(
  Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z][A-Za-z0-9-]*$' }),
  Type.Union([Type.String({ maxLength: 65_536 }), Type.Array(Type.String({ maxLength: 65_536 }), { maxItems: 100 }), Type.Null()]),
  { maxProperties: 100 },
);
const NameField = Type.String({ minLength: 1, maxLength: 256 });
export const CreateAccountPayload = Type.Object(
  {
    account: Type.Object(
      {
        name: NameField,
        email: Type.Optional(Type.String({ minLength: 3, maxLength: 256 })),
        givenName: Type.Optional(NameField),
        surname: Type.Optional(NameField),
        displayName: Type.Optional(NameField),
        enabled: Type.Optional(Type.Boolean()),
        attributes: Type.Optional(AttributeValues),
      },
      Strict,
    ),
    password: Type.Optional(SecretValue),
  },
  Strict,
);
export const UpdateAccountPayload = Type.Object({ accountId: PrincipalId, attributes: AttributeValues }, Strict);
export const SetPasswordPayload = Type.Object(
  { accountId: PrincipalId, password: SecretValue, mustChange: Type.Optional(Type.Boolean()) },
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
export type ListGrantsPayload = Static<typeof ListGrantsPayload>;
export type AccountIdPayload = Static<typeof AccountIdPayload>;
export type SecretValue = Static<typeof SecretValue>;
export type CreateAccountPayload = Static<typeof CreateAccountPayload>;
export type UpdateAccountPayload = Static<typeof UpdateAccountPayload>;
export type SetPasswordPayload = Static<typeof SetPasswordPayload>;
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
  listGrants: ListGrantsPayload,
  getAccount: AccountIdPayload,
  createAccount: CreateAccountPayload,
  updateAccount: UpdateAccountPayload,
  deleteAccount: AccountIdPayload,
  setPassword: SetPasswordPayload,
  grant: GrantPayload,
  revoke: GrantPayload,
  setAccountEnabled: SetAccountEnabledPayload,
  'ldap.search': LdapSearchPayload,
  'sql.query': SqlQueryPayload,
};

/** Types that need no resource: any agent of the pool takes them. */
export const RESOURCELESS_TYPES: ReadonlySet<string> = new Set(['ping']);

/** The payload schema of `type`, an own property only (`constructor` or `__proto__` are not job types). */
export function payloadSchemaOf(type: string): TSchema | undefined {
  return Object.prototype.hasOwnProperty.call(PAYLOAD_SCHEMAS, type) ? PAYLOAD_SCHEMAS[type] : undefined;
}

/**
 * Checks a job as it is enqueued: a known `type`, a payload that matches its
 * schema, and a `resource` exactly when the type needs one. Throws a
 * non-retryable `invalid_request` naming the field under `where` (e.g.
 * `body.jobs.3`); values are never echoed.
 */
export function assertEnqueueable(job: { type: string; resource?: string | null; payload?: unknown }, where: string): void {
  const schema = payloadSchemaOf(job.type);
  if (!schema) throw new OutpostError('invalid_request', `${where}.type: unknown job type (known: ${Object.keys(PAYLOAD_SCHEMAS).join(', ')})`);
  const hasResource = job.resource !== undefined && job.resource !== null;
  if (RESOURCELESS_TYPES.has(job.type) && hasResource) throw new OutpostError('invalid_request', `${where}.resource: ${job.type} takes no resource`);
  if (!RESOURCELESS_TYPES.has(job.type) && !hasResource) throw new OutpostError('invalid_request', `${where}.resource: is required for ${job.type}`);
  assertValid(schema, job.payload ?? {}, `${where}.payload`);
}

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

/** A grant; with `listGrants {nested: true}`, effective grants through nested groups carry `via`, the direct group. */
export const GrantRecord = Type.Object({ accountId: Type.String(), entitlementId: Type.String(), via: Type.Optional(Type.String()) });
export type GrantRecord = Static<typeof GrantRecord>;

/** `{changed}` of grant, revoke and setAccountEnabled. */
export interface ChangeResult {
  changed: boolean;
}
/** The result of a listing: how many records it wrote as output pages. */
export interface ListingResult {
  records: number;
}
/**
 * The result of `listAccounts`: also a `cursor` for the next delta listing
 * (`since`), whether this one was a delta (`delta: false` when `since` was
 * refused, e.g. a cursor from another DC, and everything was listed), and
 * whether deletions can be seen in a delta (`deletions: "unsupported"` when the
 * source cannot tell; deleted accounts are records `{id, deleted: true}`).
 */
export interface AccountListingResult extends ListingResult {
  cursor?: string;
  delta?: boolean;
  deletions?: 'listed' | 'unsupported';
}
/** The result of `createAccount`. */
export interface CreateAccountResult extends ChangeResult {
  accountId: string;
}
/** The result of checkResource. */
export interface CheckResult {
  ok: boolean;
  latencyMs: number;
  details: Record<string, unknown>;
}
