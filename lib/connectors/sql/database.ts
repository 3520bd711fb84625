import knexPkg, { type Knex } from 'knex';
import type { Logger } from '../../log/index.js';
import { abortReason, onAbort } from '../../util/abort.js';
import type { Clock, TimerHandle } from '../../util/clock.js';
import { OutpostError } from '../../util/errors.js';
import { driverModule, type ExecResult, type Row, type SqlDriver, type Stmt } from './drivers/index.js';
import { mapSqlError } from './errors.js';
import type { SqlResourceOptions } from './options.js';

type Disposable = { __knex__disposed?: unknown };

/** The abort as the job's error: our own OutpostError reason as is, anything else as a retryable `aborted`. */
export function abortError(signal: AbortSignal): OutpostError {
  const reason = abortReason(signal);
  return reason instanceof OutpostError ? reason : new OutpostError('aborted', 'the operation was aborted', { retryable: true, cause: reason });
}

/**
 * One resource's database: a knex pool (created at once, connecting only on
 * first use), statement compilation, and running work on one held connection
 * with cancellation. Every error leaving here is an OutpostError.
 */
export class SqlDatabase {
  readonly knex: Knex;
  readonly driver: SqlDriver;
  private versionCache: string | undefined;
  /**
   * Connections whose job was aborted. A server-side cancel only stops the
   * statement running at that moment; one landing between two statements
   * (a transaction's, or a listing's describe and COPY) stops nothing, so
   * no further statement is started on such a connection.
   */
  private readonly cancelled = new WeakSet<object>();

  constructor(
    private readonly opts: SqlResourceOptions,
    private readonly deps: { log: Logger; clock: Clock },
  ) {
    const mod = driverModule(opts);
    const log = deps.log;
    // knex logs to the console by default; route it through the redacting logger.
    this.knex = knexPkg({
      ...mod.knexConfig(),
      log: {
        warn: (m: unknown) => log.warn(String(m)),
        error: (m: unknown) => log.error(String(m)),
        deprecate: (m: unknown) => log.debug(String(m)),
        debug: (m: unknown) => log.debug(String(m)),
      },
    });
    this.driver = mod.create(this.knex);
  }

  /** Compiles SQL with named bindings (`:name`) into the driver's native form; values stay bound, never spliced. */
  compile(sql: string, named: Record<string, unknown> = {}): Stmt {
    const native = this.knex.raw(sql, named as Knex.ValueDict).toSQL().toNative();
    return { sql: native.sql, bindings: native.bindings as unknown[] };
  }

  /** Compiles SQL with positional `?` bindings. */
  compilePositional(sql: string, values: readonly unknown[]): Stmt {
    const native = this.knex.raw(sql, values as Knex.RawBinding[]).toSQL().toNative();
    return { sql: native.sql, bindings: native.bindings as unknown[] };
  }

  /**
   * Runs `fn` on one pooled connection. When `signal` aborts, the running
   * statement is cancelled on the server (driver.cancel) and, after the
   * connection has answered, it is dropped rather than reused, so that a late
   * cancel can never hit the next job's statement. If the statement does not
   * stop within `cancelGraceMs`, the socket is destroyed.
   */
  async withConnection<T>(signal: AbortSignal, fn: (conn: unknown) => Promise<T>): Promise<T> {
    if (signal.aborted) throw abortError(signal);
    this.driver.precheck?.();
    const conn = await this.acquire(signal);
    let cancelling: Promise<void> | undefined;
    let graceTimer: TimerHandle | undefined;
    let detach = (): void => {};
    const stopped = new Promise<never>((_, reject) => {
      detach = onAbort(signal, () => {
        this.cancelled.add(conn as object);
        cancelling = this.driver.cancel(conn).catch((err: unknown) => {
          this.deps.log.warn('could not cancel a statement', { resource: this.opts.name, error: mapSqlError(this.opts.kind, err).message });
        });
        graceTimer = this.deps.clock.setTimeout(() => {
          this.driver.destroy(conn);
          reject(abortError(signal));
        }, this.opts.cancelGraceMs);
      });
    });
    const work = fn(conn);
    work.catch(() => {}); // settled later than the race when the grace timer won
    try {
      return await Promise.race([work, stopped]);
    } catch (err) {
      if (signal.aborted) throw abortError(signal);
      const mapped = mapSqlError(this.opts.kind, err);
      // The link itself failed: the driver may not have noticed yet, so the pool must not hand it out again.
      if (mapped.code === 'unavailable') (conn as Disposable).__knex__disposed ??= mapped.message;
      throw mapped;
    } finally {
      detach();
      if (graceTimer !== undefined) this.deps.clock.clearTimeout(graceTimer);
      if (cancelling) {
        await cancelling;
        if (this.opts.kind !== 'sqlite') (conn as Disposable).__knex__disposed = 'statement cancelled by outpost';
      }
      // The mark belongs to this job: a reused connection (SQLite's, never cancelled on a server) starts clean.
      this.cancelled.delete(conn as object);
      await this.knex.client.releaseConnection(conn);
    }
  }

  /** Runs `fn` between begin and commit on `conn`; rolls back on any error. */
  async transaction<T>(conn: unknown, fn: () => Promise<T>): Promise<T> {
    await this.exec(conn, { sql: this.driver.begin, bindings: [] });
    try {
      const result = await fn();
      await this.exec(conn, { sql: this.driver.commit, bindings: [] });
      return result;
    } catch (err) {
      await this.driver.exec(conn, { sql: this.driver.rollback, bindings: [] }).catch(() => {});
      throw err;
    }
  }

  exec(conn: unknown, stmt: Stmt): Promise<ExecResult> {
    if (this.cancelled.has(conn as object)) return Promise.reject(new Error('the job was aborted'));
    return this.driver.exec(conn, stmt);
  }

  stream(conn: unknown, stmt: Stmt, batchRows: number): AsyncIterable<Row[]> {
    if (this.cancelled.has(conn as object)) throw new Error('the job was aborted');
    return this.driver.stream(conn, stmt, batchRows, () => this.cancelled.has(conn as object));
  }

  /** The server's version string (cached after the first answer). */
  async version(conn: unknown): Promise<string> {
    if (this.versionCache === undefined) {
      const { rows } = await this.driver.exec(conn, { sql: this.driver.versionSql, bindings: [] });
      const first = rows[0] ? Object.values(rows[0])[0] : undefined;
      this.versionCache = String(first ?? 'unknown');
    }
    return this.versionCache;
  }

  /** Closes every pooled connection. Idempotent. */
  async close(): Promise<void> {
    await this.knex.destroy();
  }

  private acquire(signal: AbortSignal): Promise<unknown> {
    const acquiring = this.knex.client.acquireConnection() as Promise<unknown>;
    return new Promise((resolve, reject) => {
      const detach = onAbort(signal, () => {
        // The pool still hands the connection over later: give it straight back.
        acquiring.then((c) => this.knex.client.releaseConnection(c), () => {});
        reject(abortError(signal));
      });
      acquiring.then(
        (conn) => {
          detach();
          if (signal.aborted) return;
          resolve(conn);
        },
        (err: unknown) => {
          detach();
          reject(mapSqlError(this.opts.kind, err));
        },
      );
    });
  }
}
