import type {
  AccountIdPayload,
  AccountListingResult,
  AccountRecord,
  ChangeResult,
  CheckResult,
  CreateAccountPayload,
  CreateAccountResult,
  GrantPayload,
  ListAccountsPayload,
  ListGrantsPayload,
  ListingResult,
  SetAccountEnabledPayload,
  SetPasswordPayload,
  SqlQueryPayload,
  UpdateAccountPayload,
} from '../../protocol/operations.js';
import { OutpostError } from '../../util/errors.js';
import type { Connector, ConnectorDeps, OperationContext } from '../types.js';
import { SqlDatabase } from './database.js';
import { nativeLifecycle, type AccountLifecycle } from './lifecycle.js';
import { nativeModel, queriesModel, type IdentityModel, type Listing, type ListingKind } from './models.js';
import { queriesLifecycle } from './queries-lifecycle.js';
import type { SqlResourceOptions } from './options.js';
import { bindParams } from './params.js';
import { jsonRow, writeListing } from './records.js';

/** The connector of one SQL resource over an already validated config. */
export class SqlConnector implements Connector {
  readonly kind: string;
  readonly extra: Connector['extra'];
  private readonly db: SqlDatabase;
  private readonly model: IdentityModel;
  private readonly lifecycle: AccountLifecycle;
  private readonly queriesAccounts: ReturnType<typeof queriesLifecycle> | undefined;
  private closed: Promise<void> | undefined;

  constructor(
    private readonly opts: SqlResourceOptions,
    private readonly deps: ConnectorDeps,
  ) {
    this.kind = opts.kind;
    this.db = new SqlDatabase(opts, { log: deps.log, clock: deps.clock });
    this.model = opts.model === 'native' ? nativeModel(this.db, opts) : queriesModel(this.db, opts);
    this.queriesAccounts = opts.model === 'queries' ? queriesLifecycle(this.db, opts) : undefined;
    this.lifecycle = this.queriesAccounts ?? nativeLifecycle(this.db, opts);
    this.extra = { 'sql.query': (p: SqlQueryPayload, ctx: OperationContext) => this.query(p, ctx) };
  }

  async checkResource(_p: Record<string, never>, ctx: OperationContext): Promise<CheckResult> {
    const started = this.deps.clock.now();
    return this.db.withConnection(ctx.signal, async (conn) => {
      await this.db.exec(conn, { sql: 'select 1', bindings: [] });
      const version = await this.db.version(conn);
      await this.model.check(conn);
      return { ok: true, latencyMs: this.deps.clock.now() - started, details: { dialect: this.opts.kind, version, model: this.opts.model } };
    });
  }

  /**
   * With `since`: the native model has no change tracking for principals
   * (PostgreSQL roles, MySQL accounts, SQL Server users), so it answers a full
   * listing with `delta: false, deletions: "unsupported"`; the queries model
   * answers a delta through `statements.listAccountsSince` (queries-lifecycle.ts).
   */
  listAccounts(p: ListAccountsPayload, ctx: OperationContext): Promise<AccountListingResult> {
    const pageSize = p.pageSize ?? this.opts.pageSize;
    const queries = this.queriesAccounts;
    if (queries) {
      return this.db.withConnection(ctx.signal, async (conn) => {
        const { listing, result } = await queries.accountListing(conn, p.since);
        return { records: await writeListing(this.db.stream(conn, listing.stmt, pageSize), pageSize, (row) => listing.map(row), ctx), ...result };
      });
    }
    return this.list('listAccounts', pageSize, ctx).then((r) => (p.since === undefined ? r : { ...r, delta: false, deletions: 'unsupported' as const }));
  }

  listEntitlements(_p: Record<string, never>, ctx: OperationContext): Promise<ListingResult> {
    return this.list('listEntitlements', this.opts.pageSize, ctx);
  }

  /** With `nested: true`, effective grants through nested roles, each indirect one with `via` (the account's direct role). */
  listGrants(p: ListGrantsPayload, ctx: OperationContext): Promise<ListingResult> {
    if (!p.nested) return this.list('listGrants', this.opts.pageSize, ctx);
    return this.stream((conn) => this.lifecycle.nestedGrants(conn), this.opts.pageSize, ctx);
  }

  getAccount(p: AccountIdPayload, ctx: OperationContext): Promise<AccountRecord> {
    return this.db.withConnection(ctx.signal, (conn) => this.lifecycle.getAccount(conn, p.accountId));
  }

  createAccount(p: CreateAccountPayload, ctx: OperationContext): Promise<CreateAccountResult> {
    const password = p.password === undefined ? undefined : opened(p.password);
    return this.db.withConnection(ctx.signal, (conn) => this.db.transaction(conn, () => this.lifecycle.createAccount(conn, p, password)));
  }

  updateAccount(p: UpdateAccountPayload, ctx: OperationContext): Promise<ChangeResult> {
    return this.change(ctx, (conn) => this.lifecycle.updateAccount(conn, p));
  }

  deleteAccount(p: AccountIdPayload, ctx: OperationContext): Promise<ChangeResult> {
    return this.change(ctx, (conn) => this.lifecycle.deleteAccount(conn, p.accountId));
  }

  setPassword(p: SetPasswordPayload, ctx: OperationContext): Promise<ChangeResult> {
    const password = opened(p.password);
    return this.change(ctx, (conn) => this.lifecycle.setPassword(conn, p.accountId, password, p.mustChange ?? false));
  }

  grant(p: GrantPayload, ctx: OperationContext): Promise<ChangeResult> {
    return this.change(ctx, (conn) => this.model.grant(conn, p));
  }

  revoke(p: GrantPayload, ctx: OperationContext): Promise<ChangeResult> {
    return this.change(ctx, (conn) => this.model.revoke(conn, p));
  }

  /** Never the agent's own or a privileged account (the lifecycle's target rules), checked in the same transaction. */
  setAccountEnabled(p: SetAccountEnabledPayload, ctx: OperationContext): Promise<ChangeResult> {
    return this.change(ctx, async (conn) => {
      await this.lifecycle.assertWritable(conn, p.accountId);
      return this.model.setAccountEnabled(conn, p);
    });
  }

  /** `sql.query`: runs a statement named in the config (the cloud never sends SQL text) and writes its rows as pages. */
  async query(p: SqlQueryPayload, ctx: OperationContext): Promise<ListingResult> {
    const sql = Object.prototype.hasOwnProperty.call(this.opts.queries, p.query) ? this.opts.queries[p.query] : undefined;
    if (sql === undefined) throw new OutpostError('invalid_request', `unknown query '${p.query}'`);
    const stmt = this.db.compile(sql, bindParams(`query '${p.query}'`, sql, p.params ?? {}));
    return this.db.withConnection(ctx.signal, async (conn) => ({
      records: await writeListing(this.db.stream(conn, stmt, this.opts.pageSize), this.opts.pageSize, jsonRow, ctx),
    }));
  }

  close(): Promise<void> {
    this.closed ??= this.db.close();
    return this.closed;
  }

  private list(kind: ListingKind, pageSize: number, ctx: OperationContext): Promise<ListingResult> {
    return this.stream((conn) => this.model.listing(kind, conn), pageSize, ctx);
  }

  private stream(listingOf: (conn: unknown) => Promise<Listing>, pageSize: number, ctx: OperationContext): Promise<ListingResult> {
    return this.db.withConnection(ctx.signal, async (conn) => {
      const listing = await listingOf(conn);
      return { records: await writeListing(this.db.stream(conn, listing.stmt, pageSize), pageSize, (row) => listing.map(row), ctx) };
    });
  }

  private change(ctx: OperationContext, fn: (conn: unknown) => Promise<boolean>): Promise<ChangeResult> {
    return this.db.withConnection(ctx.signal, (conn) => this.db.transaction(conn, async () => ({ changed: await fn(conn) })));
  }
}

/** The dispatcher opens sealed passwords before a connector sees them; anything else is refused, never echoed. */
function opened(password: SetPasswordPayload['password']): string {
  if (typeof password !== 'string') throw new OutpostError('invalid_request', 'password: a sealed password must be opened by the agent before it reaches the connector');
  return password;
}
