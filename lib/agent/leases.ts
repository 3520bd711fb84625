import type { Logger } from '../log/index.js';
import type { HeartbeatResponse, LeasedJob, LeaseRef, RenewalStatus } from '../protocol/schemas.js';
import { timeoutSignal, type Clock, type TimerHandle } from '../util/clock.js';
import { OutpostError } from '../util/errors.js';
import { Lease, type StopReason } from './lease.js';
import type { AgentMetrics } from './metrics.js';

export { fenceMarginMs } from './lease.js';

/** The part of the protocol client the keeper uses. */
export interface HeartbeatApi {
  heartbeat(body: { agentId: string; leases: LeaseRef[] }, signal?: AbortSignal): Promise<HeartbeatResponse>;
}

/** Options of the lease keeper. */
export interface LeaseKeeperOptions {
  agentId: string;
  /** Heartbeat period as a fraction of the lease TTL. Default 1/3 (two lost heartbeats are survivable). */
  heartbeatFraction?: number;
  /** ± jitter on the heartbeat period. Default 0.1. */
  jitter?: number;
  /** Source of randomness for the jitter. Default Math.random. */
  random?: () => number;
  /**
   * How long before a heartbeat is due its renewals may ride on a lease request
   * instead (`takeRenewals`); when none goes out by then, the heartbeat is sent.
   * Default a tenth of the period, at most 1 000 ms.
   */
  carryWindowMs?: number;
}

/** Renewals handed to the lease loop to ride on its next lease request; `settle` or `fail` is called exactly once. */
export interface CarriedRenewals {
  readonly refs: LeaseRef[];
  /** The lease answer's `leases` (undefined when it had none: a heartbeat is sent at once). */
  settle(statuses: readonly RenewalStatus[] | undefined): void;
  /** The lease call failed: a heartbeat is sent at once. */
  fail(): void;
}

const HEARTBEAT_BATCH = 1000;

/**
 * Holds this agent's leases (lease.ts) and renews them: ONE heartbeat for all
 * of them every TTL/3 ±10 %, counted from its send time; `lost` or `cancelled`
 * stops that lease. In the last `carryWindowMs` before a heartbeat the
 * renewals may ride on a lease request instead (`takeRenewals`), which saves
 * the call when the agent polls anyway; the renewal still counts from that
 * request's send time. A lease leaves the keeper by itself when it is released
 * or ended (its `onClosed` hook), so no other part edits the keeper's map.
 */
export class LeaseKeeper {
  private readonly held = new Map<string, Lease>();
  private timer: TimerHandle | undefined;
  private inFlight = false;
  /** In the carry window: the next lease request may take the renewals. */
  private due = false;
  private stopped = false;
  private readonly stopController = new AbortController();
  /** Called when a lease ends because it is no longer ours (for tests and logs). */
  onEnd: (jobId: string, why: StopReason) => void = () => {
    // No-op unless a test or a log sets it.
  };
  /** Heartbeat calls sent (for tests and the benchmark). */
  heartbeats = 0;
  /** Renewal batches that rode on a lease request (for tests and the benchmark). */
  carriedRenewals = 0;

  constructor(
    private readonly deps: { api: HeartbeatApi; clock: Clock; log: Logger; metrics?: AgentMetrics },
    private readonly opts: LeaseKeeperOptions,
  ) {}

  get size(): number {
    return this.held.size;
  }

  get(jobId: string): Lease | undefined {
    return this.held.get(jobId);
  }

  /**
   * Holds a freshly leased job; its TTL counts from `leasedAtMs` on the
   * monotonic clock (lease.ts `leaseOriginMs`: the poll's send time + heldMs).
   */
  add(job: LeasedJob, leasedAtMs: number): Lease {
    // The proxy never leases a job twice to the same agent while a lease is live; if it did, the older one is stale.
    this.held.get(job.id)?.stop('lost');
    const lease = new Lease(job, leasedAtMs, this.deps.clock, (l, gone) => this.closed(l, gone));
    if (lease.held) this.held.set(job.id, lease);
    this.schedule();
    return lease;
  }

  /** The leases whose job is still running (what a drain releases). */
  running(): Lease[] {
    return [...this.held.values()].filter((l) => l.state === 'running');
  }

  /**
   * Stops heartbeats and lets go of what is still held (results the drain could
   * not deliver): those leases expire on the proxy and their jobs run again.
   */
  stop(): void {
    this.stopped = true;
    this.stopController.abort(new OutpostError('aborted', 'lease keeper stopped'));
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
    for (const l of [...this.held.values()]) {
      if (l.state === 'running') l.release();
      l.end();
    }
  }

  /** True in the window where a lease request may carry the renewals (`takeRenewals` would give them). */
  get renewalsDue(): boolean {
    return this.due && !this.inFlight && !this.stopped;
  }

  /**
   * The renewals, when a heartbeat is due within `carryWindowMs`, for the lease
   * loop's next request; leases in `except` (their results ride on the same
   * request) are left out. Their renewal counts from now, which is no later
   * than the request's send time.
   */
  takeRenewals(except?: ReadonlySet<string>): CarriedRenewals | undefined {
    if (!this.due || this.inFlight || this.stopped || this.held.size > HEARTBEAT_BATCH) return undefined;
    const batch = [...this.held.values()].filter((l) => !except?.has(l.job.id));
    if (batch.length === 0) return undefined;
    this.due = false;
    this.inFlight = true;
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.carriedRenewals++;
    const sentAtMs = this.deps.clock.monotonicMs();
    let done = false;
    const end = (statuses: readonly RenewalStatus[] | undefined) => {
      if (done) return;
      done = true;
      this.inFlight = false;
      if (statuses) {
        this.apply({ leases: [...statuses] }, sentAtMs, batch);
        this.schedule();
      } else if (!this.stopped) {
        this.deps.metrics?.heartbeats.inc({ status: 'error' });
        // Not renewed: a heartbeat of its own goes out at once.
        void this.heartbeat();
      }
    };
    return { refs: batch.map((l) => l.ref), settle: end, fail: () => end(undefined) };
  }

  /** Sends one heartbeat now (the timer calls this; tests may too). */
  async heartbeat(): Promise<void> {
    if (this.inFlight || this.stopped || this.held.size === 0) return;
    this.inFlight = true;
    this.due = false;
    // Renewals count from the send time: the proxy renewed at or after it.
    const sentAtMs = this.deps.clock.monotonicMs();
    const sent = [...this.held.values()];
    // A renewal that answers after the next period is worth less than a fresh one: give up on it then.
    const minTtlMs = sent.reduce((m, l) => Math.min(m, l.ttlMs), Infinity);
    const timeout = timeoutSignal(this.deps.clock, Math.max(1000, Math.floor(minTtlMs / 3)), 'the heartbeat');
    try {
      const signal = AbortSignal.any([this.stopController.signal, timeout.signal]);
      for (let i = 0; i < sent.length; i += HEARTBEAT_BATCH) {
        const batch = sent.slice(i, i + HEARTBEAT_BATCH);
        this.heartbeats++;
        const res = await this.deps.api.heartbeat({ agentId: this.opts.agentId, leases: batch.map((l) => l.ref) }, signal);
        this.apply(res, sentAtMs, batch);
      }
    } catch (err) {
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- stop() may have set it during the awaits above; TS keeps the narrowing from the entry check.
      if (!this.stopped) {
        this.deps.metrics?.heartbeats.inc({ status: 'error' });
        // Self-fencing covers a proxy that stays away; one failure is only a warning.
        this.deps.log.warn('heartbeat failed', { code: (err as OutpostError).code, error: (err as Error).message, leases: sent.length });
      }
    } finally {
      timeout.clear();
      this.inFlight = false;
      this.schedule();
    }
  }

  private apply(res: HeartbeatResponse, sentAtMs: number, batch: Lease[]): void {
    // Only the leases we sent count: the job may have been re-leased to us meanwhile, under another token.
    const sent = new Map(batch.map((l) => [l.job.id, l]));
    // Counted per status once per answer: prom-client hashes the labels on every inc.
    const counts = { ok: 0, lost: 0, cancelled: 0 };
    for (const item of res.leases) {
      const lease = sent.get(item.jobId);
      if (!lease?.held) continue;
      counts[item.status]++;
      if (item.status === 'ok') lease.renew(sentAtMs, item.leaseTtlMs);
      else lease.stop(item.status === 'cancelled' ? 'cancelled' : 'lost');
    }
    for (const [status, n] of Object.entries(counts)) if (n > 0) this.deps.metrics?.heartbeats.inc({ status }, n);
  }

  private closed(lease: Lease, gone: StopReason | undefined): void {
    if (this.held.get(lease.job.id) === lease) this.held.delete(lease.job.id);
    if (this.held.size === 0 && this.timer) {
      // Nothing left to renew: the next lease starts a period of its own (and a due flag from an
      // earlier lease must not make the next poll carry the renewal of a lease taken a moment ago).
      this.deps.clock.clearTimeout(this.timer);
      this.timer = undefined;
      this.due = false;
    }
    if (!gone) return;
    this.deps.metrics?.leaseLosses.inc({ reason: gone });
    this.deps.log.warn(`lease ended: ${gone}`, { jobId: lease.job.id, type: lease.job.type, stoppedFor: lease.stopReason });
    this.onEnd(lease.job.id, gone);
  }

  private schedule(): void {
    if (this.stopped || this.timer || this.inFlight || this.held.size === 0) return;
    let ttl = Infinity;
    for (const l of this.held.values()) ttl = Math.min(ttl, l.ttlMs);
    const { heartbeatFraction = 1 / 3, jitter = 0.1, random = Math.random } = this.opts;
    const periodMs = Math.min(2_147_483_647, Math.max(10, ttl * heartbeatFraction * (1 + jitter * (2 * random() - 1))));
    const windowMs = Math.min(this.opts.carryWindowMs ?? Math.min(1000, periodMs / 10), periodMs);
    // Two steps: from periodMs − windowMs a lease request may carry the renewals; at periodMs the heartbeat goes out.
    this.timer = this.deps.clock.setTimeout(() => {
      this.due = true;
      this.timer = this.deps.clock.setTimeout(() => {
        this.timer = undefined;
        void this.heartbeat();
      }, windowMs);
    }, periodMs - windowMs);
  }
}
