import type { Clock } from '../../util/clock.js';
import { jobRetryDelayMs } from '../../util/backoff.js';
import type { LeasedJob, LeaseRef, LeaseStatus, ResultItem } from '../../protocol/schemas.js';
import { atomic, marks, query, run, runEach, stmt, type Db, type Stmt } from './db.js';
import { wipeSecretsSql } from './wipe.js';
import { announce, notifyReplicas, type Available, type StoreEvents } from './events.js';
import { fence, newLeaseSecret, num, type ClaimedRow } from './rows.js';
import { recordEnds, recordStarts } from './attempts.js';
import { nextLeaseExpiryAt, reapExpired, type ExpiredLease } from './expiry.js';

/** Options of the lease store. */
export interface LeaseStoreOptions {
  /** Lease duration handed out and renewed. Default (from config) 30 000 ms. */
  leaseTtlMs: number;
}

export interface LeaseStoreDeps {
  db: Db;
  clock: Clock;
  events: StoreEvents;
  /** This replica's id, so that it ignores its own PostgreSQL notifications. */
  replicaId: string;
  /** Randomness of the retry jitter (tests may fix it). Default Math.random. */
  random?: () => number;
  /**
   * Told the lease deadline (wall ms) of every claim and renewal, so that the
   * replica's expiry timer (lib/proxy/expiry.ts) can be armed at the earliest one.
   */
  onDeadline?: (atMs: number) => void;
}

/**
 * The agent side of the job store: claim, heartbeat, results, release and
 * expiry. Every write matches id + leaseToken + status `leased` (fencing), and
 * every batched request is one statement on the hot path.
 */
export class LeaseStore {
  constructor(
    private readonly opts: LeaseStoreOptions,
    private readonly deps: LeaseStoreDeps,
  ) {}

  /** Leases up to `max` queued jobs of `pool` that fit `resources`, in one statement. */
  async claim(pool: string, agentId: string, resources: readonly string[], max: number): Promise<LeasedJob[]> {
    const rows = await this.claimRows(pool, agentId, resources, max);
    return rows.map((r) => ({
      id: r.id,
      type: r.type,
      resource: r.resource,
      payload: JSON.parse(r.payload) as unknown,
      attempt: num(r.attempt),
      leaseToken: r.lease_token,
      leaseTtlMs: this.opts.leaseTtlMs,
      timeoutMs: num(r.timeout_ms),
    }));
  }

  /**
   * `claim` for the wire: the leased jobs as the JSON text of a `LeasedJob[]`
   * (the same bytes JSON.stringify of `claim`'s answer gives), with the
   * stored payload text spliced in instead of parsed and serialised again.
   */
  async claimJson(pool: string, agentId: string, resources: readonly string[], max: number): Promise<{ refs: LeaseRef[]; json: string }> {
    const rows = await this.claimRows(pool, agentId, resources, max);
    const ttl = this.opts.leaseTtlMs;
    const parts = rows.map(
      (r) =>
        `{"id":${JSON.stringify(r.id)},"type":${JSON.stringify(r.type)},"resource":${JSON.stringify(r.resource)},"payload":${r.payload},` +
        `"attempt":${num(r.attempt)},"leaseToken":${JSON.stringify(r.lease_token)},"leaseTtlMs":${ttl},"timeoutMs":${num(r.timeout_ms)}}`,
    );
    return { refs: rows.map((r) => ({ jobId: r.id, leaseToken: r.lease_token })), json: `[${parts.join(',')}]` };
  }

  private async claimRows(pool: string, agentId: string, resources: readonly string[], max: number): Promise<ClaimedRow[]> {
    const { db, clock } = this.deps;
    const now = clock.now();
    const fits = resources.length ? `(resource IS NULL OR resource IN (${marks(resources.length)}))` : 'resource IS NULL';
    const lock = db.dialect === 'postgres' ? 'FOR UPDATE SKIP LOCKED' : '';
    // LIMIT is written into the text, not bound: SQLite plans with a bound LIMIT's value and
    // so re-prepares the statement at every execution (measured: 4–6 % of the proxy's CPU).
    if (!Number.isSafeInteger(max) || max < 0) throw new Error('claim: max must be a non-negative integer');
    const rows = await run<ClaimedRow>(
      db,
      `UPDATE outpost_jobs SET status = 'leased', attempt = attempt + 1, leases = leases + 1,
         lease_token = CAST(? AS TEXT) || id, agent_id = ?, lease_expires_at = ?,
         started_at = COALESCE(started_at, ?), output_records = 0, output_bytes = 0
       WHERE id IN (SELECT id FROM outpost_jobs WHERE pool = ? AND status = 'queued' AND available_at <= ? AND ${fits}
                    ORDER BY available_at, id LIMIT ${max} ${lock})
       RETURNING id, type, resource, payload, attempt, timeout_ms, leases, lease_token`,
      [newLeaseSecret(), agentId, now + this.opts.leaseTtlMs, now, pool, now, ...resources],
    );
    // Pages of an earlier lease are discarded so that a reader never sees two attempts mixed.
    for (const r of rows) {
      if (num(r.leases) > 1) await discardOutput(db, pool, r.id, r.lease_token);
    }
    if (rows.length) {
      await recordStarts(db, rows, agentId, now);
      this.deps.onDeadline?.(now + this.opts.leaseTtlMs);
    }
    return rows.sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  /**
   * `UPDATE outpost_jobs SET <set> WHERE id = ? AND pool = ? AND status = 'leased' AND lease_token = ?`
   * for many leases; returns the ids it changed. On SQLite: one cached
   * statement per lease in one transaction. On PostgreSQL: one statement,
   * per-item values chosen with `CASE id`.
   */
  private async fenced<R extends LeaseRef>(
    refs: readonly R[],
    set: string,
    values: (ref: R) => unknown[],
    pool: string,
    onRow?: (row: { id: string; resource: string | null }) => void,
  ): Promise<Set<string>> {
    const { db } = this.deps;
    let rows: Array<{ id: string; resource: string | null }>;
    if (db.dialect === 'sqlite') {
      const sql = `UPDATE outpost_jobs SET ${set} WHERE id = ? AND pool = ? AND status = 'leased' AND lease_token = ? RETURNING id, resource`;
      rows = (await runEach<{ id: string; resource: string | null }>(db, sql, refs.map((r) => [...values(r), r.jobId, pool, r.leaseToken]))).flat();
    } else {
      // A `?` of SET whose value differs between items becomes `CASE id WHEN ? THEN ? … END` (TEXT columns only).
      const perItem = refs.map(values);
      let k = 0;
      const setBindings: unknown[] = [];
      const setSql = set.replace(/\?/g, () => {
        const slot = k++;
        // A value shared by every item stays a plain parameter, so PostgreSQL can type it from its column.
        const first = perItem[0]![slot];
        if (perItem.every((v) => v[slot] === first)) {
          setBindings.push(first);
          return '?';
        }
        const cases: string[] = [];
        refs.forEach((r, i) => {
          cases.push('WHEN ? THEN ?');
          setBindings.push(r.jobId, perItem[i]![slot]);
        });
        return `CASE id ${cases.join(' ')} END`;
      });
      const f = fence(refs);
      rows = await query<{ id: string; resource: string | null }>(
        db.knex,
        `UPDATE outpost_jobs SET ${setSql} WHERE pool = ? AND status = 'leased' AND ${f.sql} RETURNING id, resource`,
        [...setBindings, pool, ...f.bindings],
      );
    }
    if (onRow) rows.forEach(onRow);
    return new Set(rows.map((r) => r.id));
  }

  /** Renews leases; answers `ok`, `cancelled` (cancelled while leased by this token) or `lost`. */
  async heartbeat(pool: string, agentId: string, refs: readonly LeaseRef[]): Promise<Array<{ jobId: string; status: LeaseStatus; leaseTtlMs?: number }>> {
    if (!refs.length) return [];
    const { clock } = this.deps;
    const expiresAt = clock.now() + this.opts.leaseTtlMs;
    const ok = await this.fenced(
      refs,
      'lease_expires_at = ?, agent_id = ?',
      () => [expiresAt, agentId],
      pool,
    );
    if (ok.size) this.deps.onDeadline?.(expiresAt);
    const cancelled = ok.size === refs.length ? new Set<string>() : await this.cancelledOf(pool, refs.filter((r) => !ok.has(r.jobId)));
    return refs.map((r) =>
      ok.has(r.jobId)
        ? { jobId: r.jobId, status: 'ok' as const, leaseTtlMs: this.opts.leaseTtlMs }
        : { jobId: r.jobId, status: cancelled.has(r.jobId) ? ('cancelled' as const) : ('lost' as const) },
    );
  }

  private async cancelledOf(pool: string, refs: readonly LeaseRef[]): Promise<Set<string>> {
    const f = fence(refs);
    const rows = await run<{ id: string }>(
      this.deps.db,
      `SELECT id FROM outpost_jobs WHERE pool = ? AND status = 'cancelled' AND ${f.sql}`,
      [pool, ...f.bindings],
    );
    return new Set(rows.map((r) => r.id));
  }

  /**
   * Records results. Successes are one batch (see `fenced`); failures decide between a
   * retry (retryable, attempts left: back to queued after jobRetryDelayMs)
   * and `failed`. A repeated item is `accepted` when this token already
   * finished the job, `lost` when the token is stale.
   */
  async results(pool: string, items: readonly ResultItem[]): Promise<Array<{ jobId: string; status: 'accepted' | 'lost' }>> {
    const { db, clock, events } = this.deps;
    const now = clock.now();
    const accepted = new Set<string>();
    const succeeded = items.filter((i) => i.outcome === 'succeeded');
    if (succeeded.length) {
      const done = await this.fenced(
        succeeded,
        `status = 'succeeded', result = ?, error = NULL, result_token = lease_token, finished_at = ?, lease_expires_at = NULL, ${wipeSecretsSql(db.dialect)}`,
        (i) => [JSON.stringify(i.result ?? null), now],
        pool,
      );
      for (const id of done) accepted.add(id);
    }
    for (const item of items) {
      if (item.outcome !== 'failed') continue;
      if (!(await this.fail(pool, item, now))) continue;
      accepted.add(item.jobId);
      await recordEnds(db, [{ jobId: item.jobId, leaseToken: item.leaseToken, outcome: 'failed', error: item.error }], now);
    }
    const rest = items.filter((i) => !accepted.has(i.jobId));
    const repeated = new Set<string>();
    if (rest.length) {
      const rows = await run<{ id: string; result_token: string | null }>(
        db,
        `SELECT id, result_token FROM outpost_jobs WHERE pool = ? AND id IN (${marks(rest.length)})`,
        [pool, ...rest.map((r) => r.jobId)],
      );
      const tokens = new Map(rows.map((r) => [r.id, r.result_token]));
      for (const r of rest) if (tokens.get(r.jobId) === r.leaseToken) repeated.add(r.jobId);
    }
    for (const id of accepted) events.changed(id);
    return items.map((i) => ({ jobId: i.jobId, status: accepted.has(i.jobId) || repeated.has(i.jobId) ? 'accepted' : 'lost' }));
  }

  private async fail(pool: string, item: ResultItem & { outcome: 'failed' }, now: number): Promise<boolean> {
    const { db, events, random } = this.deps;
    const lock = db.dialect === 'postgres' ? 'FOR UPDATE' : '';
    const wipe = wipeSecretsSql(db.dialect);
    const retryAt = await atomic(db, function* (): Generator<Stmt, number | null | false, unknown[]> {
      const [row] = (yield stmt(
        `SELECT attempt, max_attempts, resource FROM outpost_jobs WHERE id = ? AND pool = ? AND lease_token = ? AND status = 'leased' ${lock}`,
        [item.jobId, pool, item.leaseToken],
      )) as Array<{ attempt: number | string; max_attempts: number | string; resource: string | null }>;
      if (!row) return false;
      const attempt = num(row.attempt);
      const error = JSON.stringify(item.error);
      if (item.error.retryable && attempt < num(row.max_attempts)) {
        const availableAt = now + jobRetryDelayMs(attempt, random);
        yield stmt(
          `UPDATE outpost_jobs SET status = 'queued', error = ?, result_token = lease_token, agent_id = NULL,
             lease_expires_at = NULL, available_at = ? WHERE id = ?`,
          [error, availableAt, item.jobId],
        );
        // The job is not leasable before availableAt: local waiters are woken then;
        // other replicas find it with their periodic re-check.
        events.availableAt(pool, row.resource, availableAt);
        return availableAt;
      }
      yield stmt(
        `UPDATE outpost_jobs SET status = 'failed', error = ?, result_token = lease_token, finished_at = ?,
           lease_expires_at = NULL, ${wipe} WHERE id = ?`,
        [error, now, item.jobId],
      );
      return null;
    });
    return retryAt !== false;
  }

  /** Gives leases back without spending an attempt (graceful shutdown, or a lease answer that was never delivered). */
  async release(pool: string, refs: readonly LeaseRef[]): Promise<Array<{ jobId: string; status: 'released' | 'lost' }>> {
    if (!refs.length) return [];
    const { db } = this.deps;
    const resources = new Map<string, string | null>();
    const released = await this.fenced(
      refs,
      `status = 'queued', attempt = attempt - 1, agent_id = NULL, lease_expires_at = NULL`,
      () => [],
      pool,
      (row) => resources.set(row.id, row.resource),
    );
    const rows = [...released].map((id) => ({ id, resource: resources.get(id) ?? null }));
    const ended = refs.filter((r) => released.has(r.jobId)).map((r) => ({ jobId: r.jobId, leaseToken: r.leaseToken, outcome: 'released' as const }));
    if (ended.length) await recordEnds(db, ended, this.deps.clock.now());
    if (released.size) {
      const av: Available = new Map([[pool, rows.map((r) => r.resource)]]);
      await notifyReplicas(db, db.knex, this.deps.replicaId, av);
      announce(this.deps.events, av);
      for (const id of released) this.deps.events.changed(id);
    }
    return refs.map((r) => ({ jobId: r.jobId, status: released.has(r.jobId) ? 'released' : 'lost' }));
  }

  /**
   * Expired leases go back to queued (the lease already counted as an
   * attempt), or end `failed` with `lease_lost` when attempts are exhausted.
   * One fenced statement (see store/expiry.ts); returns how many leases expired.
   */
  reap(onExpired?: (leases: ExpiredLease[]) => void): Promise<number> {
    return reapExpired(this.deps, onExpired);
  }

  /** The earliest `lease_expires_at` of a leased job (wall ms), or null when nothing is leased. */
  nextExpiryAt(): Promise<number | null> {
    return nextLeaseExpiryAt(this.deps.db);
  }
}

/** Deletes a job's pages of earlier leases and gives their bytes back to the pool's output quota, in one transaction. */
async function discardOutput(db: Db, pool: string, jobId: string, leaseToken: string): Promise<void> {
  await atomic(db, function* (): Generator<Stmt, void, unknown[]> {
    const gone = (yield stmt('DELETE FROM outpost_output WHERE job_id = ? AND lease_token <> ? RETURNING bytes', [jobId, leaseToken])) as Array<{ bytes: number | string }>;
    const bytes = gone.reduce((n, r) => n + num(r.bytes), 0);
    if (bytes) yield stmt('UPDATE outpost_pool_usage SET output_bytes = output_bytes - ? WHERE pool = ?', [bytes, pool]);
  });
}

export type { ExpiredLease } from './expiry.js';
