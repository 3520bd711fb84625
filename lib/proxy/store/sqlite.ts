import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** Prepared statements kept per connection; bounded, since IN lists and LIMITs vary the SQL text. */
const MAX_CACHED_STATEMENTS = 512;
/** A statement longer than this (a bulk literal) is prepared, run and not kept. */
const MAX_CACHED_SQL_CHARS = 8192;

/**
 * The SQLite store: one better-sqlite3 connection, used directly. Every
 * statement is prepared once and kept (knex prepared every statement anew,
 * which doubled the cost of a claim); a batch runs in one transaction.
 * better-sqlite3 is synchronous, so a unit of statements run here cannot
 * interleave with another: no pool and no lock are needed in this process.
 */
export class SqliteConn {
  private readonly cache = new Map<string, Database.Statement>();
  private readonly tx: Database.Transaction<(fn: () => unknown) => unknown>;

  constructor(private readonly raw: Database.Database) {
    // One wrapper, built once: better-sqlite3 builds a new one at every `transaction()` call.
    // BEGIN IMMEDIATE: the write lock is taken (or waited for, busy_timeout) before the first read.
    // A deferred transaction that read first and then wrote after another connection's commit (a
    // CLI `token create` beside a busy proxy: its migration reads, then writes) failed at once with
    // SQLITE_BUSY, which no busy timeout retries; seen as 2–4 failed `token create` in 80 under load.
    this.tx = raw.transaction((fn: () => unknown) => fn());
  }

  /** Runs one statement with positional bindings; its rows (SELECT or … RETURNING), else []. */
  all<T>(sql: string, bindings: readonly unknown[] = []): T[] {
    const stmt = this.prepared(sql);
    if (stmt.reader) return stmt.all(...bindings) as T[];
    stmt.run(...bindings);
    return [];
  }

  /**
   * Runs `fn` in one transaction (BEGIN IMMEDIATE … COMMIT, or ROLLBACK when it throws);
   * nested calls become savepoints. `fn` must be synchronous.
   */
  transaction<R>(fn: () => R): R {
    return this.tx.immediate(fn) as R;
  }

  /** Runs statements without bindings or results (schema changes). */
  exec(sql: string): void {
    this.raw.exec(sql);
  }

  get open(): boolean {
    return this.raw.open;
  }

  /** The database file's path. */
  get file(): string {
    return this.raw.name;
  }

  /** Sets `wal_autocheckpoint`: WAL pages after which a commit on this connection checkpoints (0: never). */
  autoCheckpoint(pages: number): void {
    this.raw.pragma(`wal_autocheckpoint = ${Math.max(0, Math.floor(pages))}`);
  }

  close(): void {
    this.cache.clear();
    if (this.raw.open) this.raw.close();
  }

  private prepared(sql: string): Database.Statement {
    let stmt = this.cache.get(sql);
    if (!stmt) {
      stmt = this.raw.prepare(sql);
      if (sql.length <= MAX_CACHED_SQL_CHARS) {
        if (this.cache.size >= MAX_CACHED_STATEMENTS) this.cache.clear();
        this.cache.set(sql, stmt);
      }
    }
    return stmt;
  }
}

/**
 * Opens `sqlite:<file>` in WAL with synchronous NORMAL (durable across
 * process crashes, fast commits) and a busy timeout, so that a CLI `token
 * create` beside a running proxy waits instead of failing.
 */
export function openSqlite(url: string): SqliteConn {
  const file = resolve(url.slice('sqlite:'.length));
  mkdirSync(dirname(file), { recursive: true });
  const raw = new Database(file);
  // The busy timeout first: switching to WAL can meet a lock another connection holds.
  raw.pragma('busy_timeout = 5000');
  raw.pragma('journal_mode = WAL');
  raw.pragma('synchronous = NORMAL');
  raw.pragma('foreign_keys = OFF');
  // The claim's IN-list and sorts stay in memory. Measured and left alone: a bigger
  // cache_size or mmap_size made claims and results slower (each commit walks the
  // page cache's hash), UPDATE … FROM json_each ~20× slower than one statement per item.
  raw.pragma('temp_store = MEMORY');
  return new SqliteConn(raw);
}
