import type { ChangeResult, CheckResult, GrantPayload, ListingResult, SetAccountEnabledPayload, SqlQueryPayload } from '../../protocol/operations.js';
import { OutpostError } from '../../util/errors.js';
import type { Connector, ConnectorDeps, OperationContext } from '../types.js';
import { SqlDatabase } from './database.js';
import { nativeModel, queriesModel, type IdentityModel, type ListingKind } from './models.js';
import type { SqlResourceOptions } from './options.js';
import { bindParams } from './params.js';
import { jsonRow, writeListing } from './records.js';

/** The connector of one SQL resource over an already validated config. */
export class SqlConnector implements Connector {
  readonly kind: string;
  readonly extra: Connector['extra'];
  private readonly db: SqlDatabase;
  private readonly model: IdentityModel;
  private closed: Promise<void> | undefined;

  constructor(
    private readonly opts: SqlResourceOptions,
    private readonly deps: ConnectorDeps,
  ) {
    this.kind = opts.kind;
    this.db = new SqlDatabase(opts, { log: deps.log, clock: deps.clock });
    this.model = opts.model === 'native' ? nativeModel(this.db, opts) : queriesModel(this.db, opts);
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

  listAccounts(p: { pageSize?: number }, ctx: OperationContext): Promise<ListingResult> {
    return this.list('listAccounts', p.pageSize ?? this.opts.pageSize, ctx);
  }

  listEntitlements(_p: Record<string, never>, ctx: OperationContext): Promise<ListingResult> {
    return this.list('listEntitlements', this.opts.pageSize, ctx);
  }

  listGrants(_p: Record<string, never>, ctx: OperationContext): Promise<ListingResult> {
    return this.list('listGrants', this.opts.pageSize, ctx);
  }

  grant(p: GrantPayload, ctx: OperationContext): Promise<ChangeResult> {
    return this.change(ctx, (conn) => this.model.grant(conn, p));
  }

  revoke(p: GrantPayload, ctx: OperationContext): Promise<ChangeResult> {
    return this.change(ctx, (conn) => this.model.revoke(conn, p));
  }

  setAccountEnabled(p: SetAccountEnabledPayload, ctx: OperationContext): Promise<ChangeResult> {
    return this.change(ctx, (conn) => this.model.setAccountEnabled(conn, p));
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
    return this.db.withConnection(ctx.signal, async (conn) => {
      const listing = await this.model.listing(kind, conn);
      return { records: await writeListing(this.db.stream(conn, listing.stmt, pageSize), pageSize, listing.map, ctx) };
    });
  }

  private change(ctx: OperationContext, fn: (conn: unknown) => Promise<boolean>): Promise<ChangeResult> {
    return this.db.withConnection(ctx.signal, (conn) => this.db.transaction(conn, async () => ({ changed: await fn(conn) })));
  }
}
