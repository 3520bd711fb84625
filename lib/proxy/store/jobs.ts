import type { Knex } from 'knex';
import type { Clock } from '../../util/clock.js';
import type { EnqueueRequest, JobStatus, JobView } from '../../protocol/schemas.js';
import { marks, query, run, type Db } from './db.js';
import { announce, bump, notifyReplicas, type Available, type StoreEvents } from './events.js';
import { newJobId, toJobView, type JobRow } from './rows.js';

/** Defaults of a new job (DESIGN "Job life"). */
export const DEFAULT_MAX_ATTEMPTS = 3;
export const DEFAULT_TIMEOUT_MS = 300_000;

export interface JobStoreDeps {
  db: Db;
  clock: Clock;
  events: StoreEvents;
  replicaId: string;
}

/** An enqueue item whose pool has been decided by the caller's token. */
export type NewJob = EnqueueRequest & { pool: string };

const COLUMNS = ['id', 'pool', 'type', 'resource', 'payload', 'status', 'max_attempts', 'timeout_ms', 'idempotency_key', 'available_at', 'created_at'];

/** The job side of the store: enqueue, read, list, cancel. */
export class JobStore {
  constructor(private readonly deps: JobStoreDeps) {}

  /**
   * Inserts jobs in one transaction (one statement). An `idempotencyKey`
   * already used in the pool returns the first job instead. On PostgreSQL the
   * NOTIFY goes out in the same transaction, so other replicas wake at commit.
   */
  async enqueue(items: readonly NewJob[]): Promise<Array<{ id: string; status: JobStatus }>> {
    const { db, clock, events } = this.deps;
    const now = clock.now();
    const ids = items.map(() => newJobId(Date.now()));
    const bindings: unknown[] = [];
    const tuples: string[] = [];
    items.forEach((j, i) => {
      tuples.push(`(${marks(COLUMNS.length)})`);
      bindings.push(
        ids[i], j.pool, j.type, j.resource ?? null, JSON.stringify(j.payload ?? {}), 'queued',
        j.maxAttempts ?? DEFAULT_MAX_ATTEMPTS, j.timeoutMs ?? DEFAULT_TIMEOUT_MS, j.idempotencyKey ?? null, now, now,
      );
    });
    const av: Available = new Map();
    // One INSERT is atomic by itself on SQLite; PostgreSQL needs the transaction so that NOTIFY goes out at commit.
    const work = async (trx: Knex.Transaction | null) => {
      const q = <T>(sql: string, b: readonly unknown[]) => (trx ? query<T>(trx, sql, b) : run<T>(db, sql, b));
      const inserted = await q<{ id: string; pool: string; resource: string | null }>(
        `INSERT INTO outpost_jobs (${COLUMNS.join(', ')}) VALUES ${tuples.join(', ')}
         ON CONFLICT (pool, idempotency_key) DO NOTHING RETURNING id, pool, resource`,
        bindings,
      );
      const fresh = new Set(inserted.map((r) => r.id));
      for (const r of inserted) bump(av, r.pool, r.resource);
      const existing = new Map<string, { id: string; status: JobStatus }>();
      const repeats = items.filter((j, i) => !fresh.has(ids[i]!) && j.idempotencyKey);
      if (repeats.length) {
        const where = repeats.map(() => '(pool = ? AND idempotency_key = ?)').join(' OR ');
        const rows = await q<{ id: string; pool: string; idempotency_key: string; status: JobStatus }>(
          `SELECT id, pool, idempotency_key, status FROM outpost_jobs WHERE ${where}`,
          repeats.flatMap((j) => [j.pool, j.idempotencyKey]),
        );
        for (const r of rows) existing.set(`${r.pool}\u0000${r.idempotency_key}`, { id: r.id, status: r.status });
      }
      if (trx) await notifyReplicas(db, trx, this.deps.replicaId, av);
      return items.map((j, i) => {
        if (fresh.has(ids[i]!)) return { id: ids[i]!, status: 'queued' as const };
        const first = existing.get(`${j.pool}\u0000${j.idempotencyKey}`);
        if (!first) throw new Error('enqueue: conflicting row vanished');
        return first;
      });
    };
    const out = db.dialect === 'sqlite' ? await work(null) : await db.knex.transaction((trx) => work(trx));
    announce(events, av);
    return out;
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

  /** Jobs of some pools (all when `pools` is null), newest first. */
  async list(pools: readonly string[] | null, status: JobStatus | undefined, limit: number): Promise<JobView[]> {
    const where: string[] = [];
    const bindings: unknown[] = [];
    if (pools) {
      where.push(`pool IN (${marks(pools.length)})`);
      bindings.push(...pools);
    }
    if (status) {
      where.push('status = ?');
      bindings.push(status);
    }
    const rows = await run<JobRow>(
      this.deps.db,
      `SELECT * FROM outpost_jobs ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY created_at DESC, id DESC LIMIT ?`,
      [...bindings, limit],
    );
    return rows.map(toJobView);
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
      `UPDATE outpost_jobs SET status = 'cancelled', finished_at = ?, lease_expires_at = NULL
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
}
