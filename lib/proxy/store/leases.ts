import type { Clock } from '../../util/clock.js';
import { jobRetryDelayMs } from '../../util/backoff.js';
import type { LeasedJob, LeaseRef, LeaseStatus, ResultItem } from '../../protocol/schemas.js';
import type { Db } from './db.js';
import { tellAvailable, type Available, type StoreEvents } from './events.js';
import { newLeaseSecret, num } from './rows.js';
import { leaseKey, type ClaimArgs, type ClaimedRow, type ReleasedRow, type ResultsOutcome } from './sql/lease-ops.js';
import * as sqlite from './sql/leases-sqlite.js';
import * as pg from './sql/leases-pg.js';
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
 * expiry. Every write matches id + leaseToken + pool + status `leased`
 * (fencing), every answer is the answer for that (id, leaseToken), and every
 * batch is one transaction on SQLite and one statement on PostgreSQL's hot
 * path (the statements are in sql/leases-sqlite.ts and sql/leases-pg.ts).
 * A lease poll that carries its previous batch's results reports them and
 * claims the next batch in one operation (`settleAndClaimJson`); the
 * separate routes use `results`, `heartbeat` and `claimJson`.
 */
export class LeaseStore {
  constructor(
    private readonly opts: LeaseStoreOptions,
    private readonly deps: LeaseStoreDeps,
  ) {}

  /** Leases up to `max` queued jobs of `pool` that fit `resources`, oldest first (answered by id). */
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
  async claimJson(pool: string, agentId: string, resources: readonly string[], max: number): Promise<ClaimedJson> {
    return this.toJson(await this.claimRows(pool, agentId, resources, max));
  }

  /**
   * What a lease poll carries, then its claim: the results and renewals are
   * recorded first, as by `results` and `heartbeat`, then up to `max` jobs
   * are claimed as by `claimJson` (none when `max` is 0). On SQLite all of it
   * is one transaction, so a poll costs one commit instead of two or three;
   * on PostgreSQL a poll that carries only successes is one statement.
   */
  async settleAndClaimJson(pool: string, agentId: string, cargo: Cargo, resources: readonly string[], max: number): Promise<SettledClaim> {
    const { db, clock } = this.deps;
    const items = cargo.results ?? [];
    const refs = cargo.leases ?? [];
    if (db.dialect !== 'sqlite') {
      // The usual poll (successes only, nothing to renew): one statement (leases-pg.ts succeedAndClaim).
      const successes = items.filter((i): i is Extract<ResultItem, { outcome: 'succeeded' }> => i.outcome === 'succeeded');
      if (max > 0 && !refs.length && successes.length && successes.length === items.length) {
        const args = this.claimArgs(pool, agentId, resources, max, clock.now());
        const { outcome, rows } = await pg.succeedAndClaim(db, pool, successes, args);
        return { results: this.recorded(pool, items, outcome), claimed: this.toJson(this.claimed(rows, args)) };
      }
      return {
        ...(items.length ? { results: await this.results(pool, items) } : {}),
        ...(refs.length ? { leases: await this.heartbeat(pool, agentId, refs) } : {}),
        claimed: max > 0 ? await this.claimJson(pool, agentId, resources, max) : this.toJson([]),
      };
    }
    const c = db.sqlite;
    const now = clock.now();
    const expiresAt = now + this.opts.leaseTtlMs;
    const args = this.claimArgs(pool, agentId, resources, max, now);
    const done = c.transaction(() => ({
      recorded: items.length ? sqlite.results(c, pool, items, now, this.retryDelay) : undefined,
      renewed: refs.length ? sqlite.renew(c, pool, agentId, expiresAt, refs) : undefined,
      rows: max > 0 ? sqlite.claim(c, args) : [],
    }));
    return {
      ...(done.recorded ? { results: this.recorded(pool, items, done.recorded) } : {}),
      ...(done.renewed ? { leases: this.renewed(refs, done.renewed, expiresAt) } : {}),
      claimed: this.toJson(this.claimed(done.rows, args)),
    };
  }

  private async claimRows(pool: string, agentId: string, resources: readonly string[], max: number): Promise<ClaimedRow[]> {
    const { db, clock } = this.deps;
    const args = this.claimArgs(pool, agentId, resources, max, clock.now());
    return this.claimed(db.dialect === 'sqlite' ? sqlite.claim(db.sqlite, args) : await pg.claim(db, args), args);
  }

  private claimArgs(pool: string, agentId: string, resources: readonly string[], max: number, now: number): ClaimArgs {
    return { pool, agentId, resources, max, nowMs: now, leaseExpiresAtMs: now + this.opts.leaseTtlMs, secret: newLeaseSecret() };
  }

  /** After a claim committed: the deadline goes to the expiry timer; the rows in id order. */
  private claimed(rows: ClaimedRow[], args: ClaimArgs): ClaimedRow[] {
    if (rows.length) this.deps.onDeadline?.(args.leaseExpiresAtMs);
    return rows.sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  private toJson(rows: readonly ClaimedRow[]): ClaimedJson {
    const ttl = this.opts.leaseTtlMs;
    const parts = rows.map(
      (r) =>
        `{"id":${JSON.stringify(r.id)},"type":${JSON.stringify(r.type)},"resource":${JSON.stringify(r.resource)},"payload":${r.payload},` +
        `"attempt":${num(r.attempt)},"leaseToken":${JSON.stringify(r.lease_token)},"leaseTtlMs":${ttl},"timeoutMs":${num(r.timeout_ms)}}`,
    );
    return { refs: rows.map((r) => ({ jobId: r.id, leaseToken: r.lease_token })), json: `[${parts.join(',')}]` };
  }

  /** Renews leases; answers `ok`, `cancelled` (cancelled while leased by this token) or `lost`, per (jobId, leaseToken). */
  async heartbeat(pool: string, agentId: string, refs: readonly LeaseRef[]): Promise<RenewalStatus[]> {
    if (!refs.length) return [];
    const { db, clock } = this.deps;
    const expiresAt = clock.now() + this.opts.leaseTtlMs;
    const renewed = db.dialect === 'sqlite' ? sqlite.renew(db.sqlite, pool, agentId, expiresAt, refs) : await pg.renew(db, pool, agentId, expiresAt, refs);
    return this.renewed(refs, renewed, expiresAt);
  }

  /** After renewals committed: the deadline goes to the expiry timer; a status per ref. */
  private renewed(refs: readonly LeaseRef[], { ok, cancelled }: { ok: Set<string>; cancelled: Set<string> }, expiresAt: number): RenewalStatus[] {
    if (ok.size) this.deps.onDeadline?.(expiresAt);
    return refs.map((r) => {
      const key = leaseKey(r.jobId, r.leaseToken);
      if (ok.has(key)) return { jobId: r.jobId, status: 'ok' as const, leaseTtlMs: this.opts.leaseTtlMs };
      return { jobId: r.jobId, status: cancelled.has(key) ? ('cancelled' as const) : ('lost' as const) };
    });
  }

  /**
   * Records results. A success ends the job; a failure decides between a
   * retry (retryable, attempts left: back to queued after jobRetryDelayMs)
   * and `failed`. A repeated item is `accepted` when this token already
   * finished the job, `lost` when the token is stale.
   */
  async results(pool: string, items: readonly ResultItem[]): Promise<ResultStatus[]> {
    if (!items.length) return [];
    const { db, clock } = this.deps;
    const now = clock.now();
    const out = db.dialect === 'sqlite' ? sqlite.results(db.sqlite, pool, items, now, this.retryDelay) : await pg.results(db, pool, items, now, this.retryDelay);
    return this.recorded(pool, items, out);
  }

  private readonly retryDelay = (attempt: number): number => jobRetryDelayMs(attempt, this.deps.random);

  /** After results committed: retries and changes are announced; a status per item. */
  private recorded(pool: string, items: readonly ResultItem[], out: ResultsOutcome): ResultStatus[] {
    const { events } = this.deps;
    // The job is not leasable before its retry time: local waiters are woken then;
    // other replicas find it with their periodic re-check.
    for (const r of out.retries) events.availableAt(pool, r.resource, r.atMs);
    const changed = new Set<string>();
    return items.map((i) => {
      const key = leaseKey(i.jobId, i.leaseToken);
      if (out.accepted.has(key) && !changed.has(i.jobId)) {
        changed.add(i.jobId);
        events.changed(i.jobId);
      }
      return { jobId: i.jobId, status: out.accepted.has(key) || out.repeated.has(key) ? 'accepted' : 'lost' };
    });
  }

  /** Gives leases back without spending an attempt (graceful shutdown, or a lease answer that was never delivered). */
  async release(pool: string, refs: readonly LeaseRef[]): Promise<Array<{ jobId: string; status: 'released' | 'lost' }>> {
    if (!refs.length) return [];
    const { db, clock, events } = this.deps;
    const now = clock.now();
    const rows: ReleasedRow[] = db.dialect === 'sqlite' ? sqlite.release(db.sqlite, pool, now, refs) : await pg.release(db, pool, now, refs);
    const released = new Set(rows.map((r) => leaseKey(r.id, r.lease_token)));
    if (rows.length) {
      const av: Available = new Map([[pool, rows.map((r) => r.resource)]]);
      await tellAvailable(db, events, this.deps.replicaId, av);
      for (const r of rows) events.changed(r.id);
    }
    return refs.map((r) => ({ jobId: r.jobId, status: released.has(leaseKey(r.jobId, r.leaseToken)) ? 'released' : 'lost' }));
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

export type { ExpiredLease } from './expiry.js';

/** A claim for the wire: the leases, and the jobs as the JSON text of a `LeasedJob[]`. */
export interface ClaimedJson {
  refs: LeaseRef[];
  json: string;
}

/** What a lease poll carries besides the poll (LeaseRequest.results, .leases). */
export interface Cargo {
  results?: readonly ResultItem[] | undefined;
  leases?: readonly LeaseRef[] | undefined;
}

/** The answer to a poll's cargo (present when it carried that part) and its claim. */
export interface SettledClaim {
  results?: ResultStatus[];
  leases?: RenewalStatus[];
  claimed: ClaimedJson;
}

export interface ResultStatus {
  jobId: string;
  status: 'accepted' | 'lost';
}

export interface RenewalStatus {
  jobId: string;
  status: LeaseStatus;
  leaseTtlMs?: number;
}
