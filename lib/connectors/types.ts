import type { Logger } from '../log/index.js';
import type { Clock } from '../util/clock.js';
import type {
  AccountIdPayload,
  AccountListingResult,
  AccountRecord,
  CreateAccountPayload,
  CreateAccountResult,
  ListGrantsPayload,
  SetPasswordPayload,
  UpdateAccountPayload,
  ChangeResult,
  CheckResult,
  GrantPayload,
  ListAccountsPayload,
  ListingResult,
  SetAccountEnabledPayload,
} from '../protocol/operations.js';

/**
 * What an operation receives besides its payload. The agent builds one per
 * job; connectors never see leases, tokens or HTTP.
 */
export interface OperationContext {
  /** Aborted on lease loss, cancel, job timeout or agent shutdown. Pass it to every I/O call. */
  signal: AbortSignal;
  /** A child logger carrying jobId, type, resource and attempt. */
  log: Logger;
  /**
   * Sends one page of output records. Resolves once the page is on its way and
   * the agent's pipeline has room (a few pages unacknowledged at most), so
   * awaiting it is the listing's backpressure: a connector reads the next page
   * while the last ones travel, and memory stays at a few pages. Rejects once a
   * page failed (refused, lease lost). The job's result goes out only after
   * every page was stored.
   */
  writePage(records: readonly unknown[]): Promise<void>;
}

/** One operation: a validated payload in, a JSON-serialisable result out. */
export type Operation<P = unknown, R = unknown> = (payload: P, ctx: OperationContext) => Promise<R>;

/**
 * The identity operations every connector serves (DESIGN "Operations"), plus
 * kind-specific ones such as `ldap.search` or `sql.query` in `extra`.
 * Payloads arrive already validated against lib/protocol/operations.ts.
 * Errors are thrown as OutpostError with a code and `retryable`, mapped from
 * the driver's codes in one table per connector.
 */
export interface Connector {
  /** The resource kind, e.g. `ldap`, `postgres`. */
  readonly kind: string;
  checkResource(payload: Record<string, never>, ctx: OperationContext): Promise<CheckResult>;
  /** With `since`, only what changed after that cursor (see AccountListingResult). */
  listAccounts(payload: ListAccountsPayload, ctx: OperationContext): Promise<AccountListingResult | ListingResult>;
  listEntitlements(payload: Record<string, never>, ctx: OperationContext): Promise<ListingResult>;
  /** With `nested: true`, effective grants through nested groups (and AD primary groups), each with `via`. */
  listGrants(payload: ListGrantsPayload, ctx: OperationContext): Promise<ListingResult>;
  /**
   * Grant and revoke accept only what listEntitlements would list (one
   * definition of an entitlement per dialect, narrowed by the resource's
   * `entitlements` allow-list); anything else is a non-retryable `forbidden`
   * naming the rule, checked before anything is written.
   */
  grant(payload: GrantPayload, ctx: OperationContext): Promise<ChangeResult>;
  revoke(payload: GrantPayload, ctx: OperationContext): Promise<ChangeResult>;
  /** Acts only on what listAccounts would list (LDAP: never the base entry or a container); else `forbidden`. */
  setAccountEnabled(payload: SetAccountEnabledPayload, ctx: OperationContext): Promise<ChangeResult>;
  // ---- the account lifecycle (issue 12): optional, a kind without the concept leaves it out (`unknown_type`) ----
  /** The account record as in listAccounts; `not_found` (non-retryable) when absent. */
  getAccount?(payload: AccountIdPayload, ctx: OperationContext): Promise<AccountRecord>;
  /** Idempotent: the same identity existing already → `changed: false`. */
  createAccount?(payload: CreateAccountPayload, ctx: OperationContext): Promise<CreateAccountResult>;
  /** Only attributes allow-listed in the resource config; never password, objectClass or the naming attribute. */
  updateAccount?(payload: UpdateAccountPayload, ctx: OperationContext): Promise<ChangeResult>;
  /** Absent → `changed: false`. */
  deleteAccount?(payload: AccountIdPayload, ctx: OperationContext): Promise<ChangeResult>;
  /** `password` arrives opened (the dispatcher opens sealed boxes and registers the value for log redaction). */
  setPassword?(payload: SetPasswordPayload & { password: string }, ctx: OperationContext): Promise<ChangeResult>;
  /** Kind-specific job types, keyed by job type (`ldap.search`, `sql.query`). */
  readonly extra: Readonly<Record<string, Operation<any, unknown>>>;
  /** Closes pooled connections (unbind, pool destroy). Idempotent. */
  close(): Promise<void>;
}

/** What a connector factory receives from the agent's composition root. */
export interface ConnectorDeps {
  log: Logger;
  clock: Clock;
  /** Reads a secret file (trimmed) and registers its value for redaction. */
  readSecret(path: string): string;
}

/**
 * Builds a connector from one entry of the agent's `resources` config. It
 * validates `config` itself and throws `config_error` naming the key.
 * It must not connect yet: connections open lazily on the first operation.
 */
export type ConnectorFactory = (name: string, config: Record<string, unknown>, deps: ConnectorDeps) => Connector;

/** The identity operations by job type, for dispatch. */
export const IDENTITY_OPERATIONS = [
  'checkResource',
  'listAccounts',
  'listEntitlements',
  'listGrants',
  'grant',
  'revoke',
  'setAccountEnabled',
  'getAccount',
  'createAccount',
  'updateAccount',
  'deleteAccount',
  'setPassword',
] as const;
export type IdentityOperation = (typeof IDENTITY_OPERATIONS)[number];
