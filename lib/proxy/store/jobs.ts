import type { Knex } from 'knex';
import type { Clock } from '../../util/clock.js';
import { OutpostError } from '../../util/errors.js';
import type { EnqueueRequest, JobStatus, JobView } from '../../protocol/schemas.js';
import { marks, query, run, type Db } from './db.js';
import type { SqliteConn } from './sqlite.js';
import { wipeSecretsSql } from './wipe.js';
import { bump, tellAvailable, type Available, type StoreEvents } from './events.js';
import { newJobId, num, toJobView, type JobRow } from './rows.js';
import { decodeCursor, encodeCursor } from './cursor.js';
import type { QueuedQuota } from './queued.js';

/** Defaults of a new job (DESIGN "Job life"). */
export const DEFAULT_MAX_ATTEMPTS = 3;
export const DEFAULT_TIMEOUT_MS = 300_000;
/** Default time a job may stay queued before it ends `failed`/`expired` (config `queueTimeoutMs`). */
export const DEFAULT_QUEUE_TIMEOUT_MS = 86_400_000;

/** A quota that refused a request, for the `outpost_proxy_quota_refusals_total{quota}` metric. */
export type QuotaName =
  | 'agents_per_pool'
  | 'agent_info_bytes'
  | 'parked_polls_per_pool'
  | 'output_bytes_per_job'
  | 'output_bytes_per_pool'
  | 'queued_jobs_per_pool'
  | 'requests_per_token';

export interface JobStoreDeps {
  db: Db;
  clock: Clock;
  events: StoreEvents;
  replicaId: string;
  /** The queued-jobs quota; none when absent (store tests). */
  queued?: QueuedQuota;
  /** Told of each refusal (metrics). */
  onQuota?: (quota: QuotaName) => void;
  /** Default queue timeout. Default 24 h. */
  queueTimeoutMs?: number;
}

/** An enqueue item whose pool has been decided by the caller's token. */
export type NewJob = EnqueueRequest & { pool: string };

/** One page of a listing. */
export interface JobPage {
  jobs: JobView[];
  /** Cursor of the next page; null on the last one. */
  nextCursor: string | null;
}

const COLUMNS = ['id', 'pool', 'type', 'resource', 'payload', 'status', 'max_attempts', 'timeout_ms', 'idempotency_key', 'available_at', 'created_at', 'expires_at'];
const INSERT_ONE = `INSERT INTO outpost_jobs (${COLUMNS.join(', ')}) VALUES (${marks(COLUMNS.length)})
  ON CONFLICT (pool, idempotency_key) DO NOTHING RETURNING id, pool, resource`;
const SELECT_BY_KEY = 'SELECT id, status FROM outpost_jobs WHERE pool = ? AND idempotency_key = ?';

/** The job side of the store: enqueue, read, list, cancel. */
export class JobStore {
  constructor(private readonly deps: JobStoreDeps) {}

  /**
   * Inserts jobs (one transaction on SQLite, one statement on PostgreSQL). An
   * `idempotencyKey` already used in the pool returns the first job instead.
   * Once the rows are committed, this replica's parked polls are woken, then
   * the other replicas by NOTIFY (events.ts tellAvailable).
   */
  async enqueue(items: readonly NewJob[]): Promise<Array<{ id: string; status: JobStatus }>> {
    const quota = this.deps.queued;
    if (!quota) return this.insert(items);
    const perPool = new Map<string, number>();
    for (const j of items) perPool.set(j.pool, (perPool.get(j.pool) ?? 0) + 1);
    const admitted: Array<[string, number]> = [];
    try {
      for (const [pool, n] of perPool) {
        const queued = await quota.admit(pool, n);
        if (queued !== null) {
          this.deps.onQuota?.('queued_jobs_per_pool');
          throw new OutpostError('rate_limited', `pool ${pool} has ${queued} queued jobs; the limit is ${quota.limit} (quotas.queuedJobsPerPool)`, { retryAfterMs: 10_000 });
        }
        admitted.push([pool, n]);
      }
      return await this.insert(items);
    } finally {
      for (const [pool, n] of admitted) quota.settle(pool, n);
    }
  }

  private async insert(items: readonly NewJob[]): Promise<Array<{ id: string; status: JobStatus }>> {
    const { db, clock, events } = this.deps;
    const now = clock.now();
    const defaultExpiryMs = this.deps.queueTimeoutMs ?? DEFAULT_QUEUE_TIMEOUT_MS;
    const ids = items.map(() => newJobId(Date.now()));
    const values = items.map((j, i) => [
      ids[i], j.pool, j.type, j.resource ?? null, JSON.stringify(j.payload ?? {}), 'queued',
      j.maxAttempts ?? DEFAULT_MAX_ATTEMPTS, j.timeoutMs ?? DEFAULT_TIMEOUT_MS, j.idempotencyKey ?? null, now, now,
      expiresAtMs(j, now, defaultExpiryMs),
    ]);
    const av: Available = new Map();
    const out = db.dialect === 'sqlite' ? this.insertSqlite(db.sqlite, items, values, av) : await this.insertPg(db.knex, items, ids, values, av);
    await tellAvailable(db, events, this.deps.replicaId, av);
    return out;
  }

  /** SQLite: one prepared single-row INSERT per job, all in one transaction. */
  private insertSqlite(c: SqliteConn, items: readonly NewJob[], values: unknown[][], av: Available): Array<{ id: string; status: JobStatus }> {
    return c.transaction(() =>
      items.map((j, i) => {
        const [row] = c.all<{ id: string; pool: string; resource: string | null }>(INSERT_ONE, values[i]);
        if (row) {
          bump(av, row.pool, row.resource);
          return { id: row.id, status: 'queued' as const };
        }
        const [first] = c.all<{ id: string; status: JobStatus }>(SELECT_BY_KEY, [j.pool, j.idempotencyKey]);
        if (!first) throw new Error('enqueue: conflicting row vanished');
        return first;
      }),
    );
  }

  /**
   * PostgreSQL: one multi-row INSERT in autocommit (not a transaction that also carried the NOTIFY: BEGIN,
   * INSERT, pg_notify, COMMIT was four round trips); `enqueue` then tells the waiters (tellAvailable).
   * Why not one statement (a data-modifying CTE with pg_notify): it made a 1 000-row batch ~70 % slower.
   */
  private async insertPg(knex: Knex, items: readonly NewJob[], ids: readonly string[], values: unknown[][], av: Available): Promise<Array<{ id: string; status: JobStatus }>> {
    const inserted = await query<{ id: string; pool: string; resource: string | null }>(
      knex,
      `INSERT INTO outpost_jobs (${COLUMNS.join(', ')}) VALUES ${values.map(() => `(${marks(COLUMNS.length)})`).join(', ')}
       ON CONFLICT (pool, idempotency_key) DO NOTHING RETURNING id, pool, resource`,
      values.flat(),
    );
    const fresh = new Set(inserted.map((r) => r.id));
    for (const r of inserted) bump(av, r.pool, r.resource);
    const existing = new Map<string, { id: string; status: JobStatus }>();
    const repeats = items.filter((j, i) => !fresh.has(ids[i] ?? '') && j.idempotencyKey);
    if (repeats.length) {
      // The rows that turned these away were committed before ON CONFLICT gave way: this read sees them.
      const rows = await query<{ id: string; pool: string; idempotency_key: string; status: JobStatus }>(
        knex,
        'SELECT j.id, j.pool, j.idempotency_key, j.status FROM outpost_jobs j JOIN unnest(?::text[], ?::text[]) AS r(pool, k) ON j.pool = r.pool AND j.idempotency_key = r.k',
        [repeats.map((j) => j.pool), repeats.map((j) => j.idempotencyKey)],
      );
      for (const r of rows) existing.set(`${r.pool}\u0000${r.idempotency_key}`, { id: r.id, status: r.status });
    }
    return items.map((j, i) => {
      const id = ids[i];
      if (id === undefined) throw new OutpostError('internal', 'enqueue: a job without an id');
      if (fresh.has(id)) return { id, status: 'queued' as const };
      const first = existing.get(`${j.pool}\u0000${j.idempotencyKey}`);
      if (!first) throw new Error('enqueue: conflicting row vanished');
      return first;
    });
  }

  /** The raw row of a job, or undefined. */
  async row(id: string): Promise<JobRow | undefined> {
    const [row] = await run<JobRow>(this.deps.db, 'SELECT * FROM outpost_jobs WHERE id = ?', [id]);
    return row;
  }

  /** The view of a job, or undefined. */
  async get(id: string): Promise<JobView | undefined> {
    const row = await this.row(id);
    return row ? toJobView(row) : undefined;
  }

  /**
   * One page of jobs of some pools (all when `pools` is null), newest first:
   * keyset paging on (created_at, id). Each pool's page is read from the
   * (pool, created_at, id) index, or for open jobs from the partial index of
   * their status, so `status=queued` costs the same with a million finished
   * jobs; all pools are one page per pool, merged.
   */
  async list(pools: readonly string[] | null, status: JobStatus | undefined, limit: number, cursor?: string): Promise<JobPage> {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new Error('list: limit must be a positive integer');
    if (status && !LISTED_STATUSES.includes(status)) throw new Error('list: unknown status');
    const after = cursor ? decodeCursor(cursor, ['number', 'string']) : null;
    const rows: JobRow[] = [];
    for (const pool of pools ?? (await this.pools())) rows.push(...(await this.poolPage(pool, status, limit + 1, after)));
    if (pools?.length !== 1) rows.sort((a, b) => num(b.created_at) - num(a.created_at) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return { jobs: page.map(toJobView), nextCursor: rows.length > limit && last ? encodeCursor([num(last.created_at), last.id]) : null };
  }

  private async poolPage(pool: string, status: JobStatus | undefined, limit: number, after: Array<string | number> | null): Promise<JobRow[]> {
    // The status as a literal, not a binding: only then can the planner use the partial index of that status.
    const where = ['pool = ?', ...(status ? [`status = '${status}'`] : [])];
    const bindings: unknown[] = [pool];
    if (after) {
      // A row value: both SQLite and PostgreSQL read it as a range of the (pool, created_at, id) index.
      where.push('(created_at, id) < (?, ?)');
      bindings.push(...after);
    }
    // Open jobs (few: bounded by the queue quota and the agents' concurrency) and failed ones come from their
    // partial index; SQLite is told so, or it may walk a million finished jobs newest-first.
    const hint = this.deps.db.dialect === 'sqlite' && (status === 'queued' || status === 'leased' || status === 'failed') ? `INDEXED BY outpost_jobs_${status}` : '';
    return run<JobRow>(
      this.deps.db,
      `SELECT * FROM outpost_jobs ${hint} WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC LIMIT ${limit}`,
      bindings,
    );
  }

  /** Pools that have jobs, in order: a loose scan of the index on pool, one seek per pool (capped). */
  async pools(max = 10_000): Promise<string[]> {
    const out: string[] = [];
    for (let after = ''; out.length < max; ) {
      const [row] = await run<{ pool: string }>(this.deps.db, 'SELECT pool FROM outpost_jobs WHERE pool > ? ORDER BY pool LIMIT 1', [after]);
      if (!row) break;
      out.push((after = row.pool));
    }
    return out;
  }

  /**
   * Cancels a queued or leased job. The lease token stays on the row, so the
   * agent holding it hears `cancelled` on its next heartbeat. A terminal job
   * is returned unchanged.
   */
  async cancel(id: string): Promise<JobView | undefined> {
    const { db, clock } = this.deps;
    await run(
      db,
      `UPDATE outpost_jobs SET status = 'cancelled', finished_at = ?, lease_expires_at = NULL, ${wipeSecretsSql(db.dialect)}
       WHERE id = ? AND status IN ('queued', 'leased') RETURNING id`,
      [clock.now(), id],
    );
    this.deps.events.changed(id);
    return this.get(id);
  }

  /**
   * The resources of jobs of `pool` that are leasable now, one entry per job
   * (capped): the waiters' periodic re-check, which catches retries whose
   * backoff ended and work announced by a replica whose NOTIFY was missed.
   */
  async availableNow(pool: string, capPerResource: number): Promise<Array<string | null>> {
    const rows = await run<{ resource: string | null; n: number | string }>(
      this.deps.db,
      `SELECT resource, COUNT(*) AS n FROM outpost_jobs WHERE pool = ? AND status = 'queued' AND available_at <= ? GROUP BY resource`,
      [pool, this.deps.clock.now()],
    );
    const out: Array<string | null> = [];
    for (const r of rows) for (let i = 0; i < Math.min(Number(r.n), capPerResource); i++) out.push(r.resource);
    return out;
  }

  /**
   * Queued jobs past their `expires_at` end `failed` with code `expired`, at
   * most `batch` per call (the sweep calls again while a batch is full).
   * Returns the ids it expired.
   */
  async expireQueued(batch: number): Promise<string[]> {
    const { db, clock } = this.deps;
    const now = clock.now();
    const lock = db.dialect === 'postgres' ? 'FOR UPDATE SKIP LOCKED' : '';
    const rows = await run<{ id: string }>(
      db,
      `UPDATE outpost_jobs SET status = 'failed', finished_at = ?, error = ?, ${wipeSecretsSql(db.dialect)}
       WHERE status = 'queued' AND id IN (SELECT id FROM outpost_jobs WHERE status = 'queued' AND expires_at <= ? ORDER BY expires_at LIMIT ${Math.max(1, Math.floor(batch))} ${lock})
       RETURNING id`,
      [now, EXPIRED_ERROR, now],
    );
    for (const r of rows) this.deps.events.changed(r.id);
    return rows.map((r) => r.id);
  }
}

const LISTED_STATUSES: readonly string[] = ['queued', 'leased', 'succeeded', 'failed', 'cancelled'];

const EXPIRED_ERROR = JSON.stringify({ code: 'expired', message: 'the job was still queued at its expiry (expiresAt / queueTimeoutMs)', retryable: false });

/** When a new job expires if still queued: its `expiresAt`, else now + its `queueTimeoutMs` or the default. */
function expiresAtMs(j: NewJob, now: number, defaultMs: number): number {
  if (j.expiresAt !== undefined) return Date.parse(j.expiresAt);
  return now + (j.queueTimeoutMs ?? defaultMs);
}
