import type { Logger } from '../log/index.js';
import type { HeartbeatResponse, LeasedJob, LeaseRef } from '../protocol/schemas.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import { OutpostError } from '../util/errors.js';
import { Deadlines, type DeadlineId } from './deadlines.js';
import { LazyAbortController } from './lazy-abort.js';
import type { AgentMetrics } from './metrics.js';

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
}

/** Why a held lease ended without a result being reported. */
export type LeaseEnd = 'lost' | 'cancelled' | 'fenced';

/** A lease this agent holds: while its job runs, and after, until its result is accepted. */
export interface HeldLease {
  readonly job: LeasedJob;
  /** Aborted on lost, cancelled, self-fencing, job timeout or shutdown (its signal is made on first use). */
  readonly controller: LazyAbortController;
  ttlMs: number;
  /** Self-fencing deadline: the last renewal (or receipt) + TTL − margin. */
  fenceAtMs: number;
  phase: 'running' | 'reporting';
  /** The self-fencing deadline in the keeper's Deadlines. */
  fence: DeadlineId | undefined;
}

/**
 * The self-fencing margin: 2 s as in DESIGN, but at most a quarter of the TTL so
 * that short test TTLs (1.5 s) still leave the job time to run between renewals.
 */
export function fenceMarginMs(ttlMs: number): number {
  return Math.min(2000, Math.floor(ttlMs / 4));
}

const HEARTBEAT_BATCH = 1000;

/**
 * Keeps this agent's leases: ONE heartbeat for all of them every TTL/3 ±10 %,
 * aborts a job whose lease the proxy reports `lost` or `cancelled`, and
 * self-fences (aborts) a job when no renewal succeeded by receipt + TTL −
 * margin, so a job whose lease is gone stops instead of running twice.
 */
export class LeaseKeeper {
  private readonly held = new Map<string, HeldLease>();
  private timer: TimerHandle | undefined;
  private inFlight = false;
  private stopped = false;
  private readonly stopController = new AbortController();
  /** Called when a lease ends without a result (for the reporter and logs). */
  onEnd: (jobId: string, why: LeaseEnd) => void = () => {};
  /** Heartbeat calls sent (for tests and the benchmark). */
  heartbeats = 0;

  private readonly deadlines: Deadlines;

  constructor(
    private readonly deps: {
      api: HeartbeatApi;
      clock: Clock;
      log: Logger;
      metrics?: AgentMetrics;
      /** Where self-fencing deadlines wait (shared with job timeouts). Default: its own, on `clock`. */
      deadlines?: Deadlines;
    },
    private readonly opts: LeaseKeeperOptions,
  ) {
    this.deadlines = deps.deadlines ?? new Deadlines(deps.clock);
  }

  get size(): number {
    return this.held.size;
  }

  get(jobId: string): HeldLease | undefined {
    return this.held.get(jobId);
  }

  /** Holds a freshly leased job, counting its TTL from `receivedAtMs` (when the lease answer arrived). */
  add(job: LeasedJob, receivedAtMs: number): HeldLease {
    const lease: HeldLease = {
      job,
      controller: new LazyAbortController(),
      ttlMs: job.leaseTtlMs,
      fenceAtMs: receivedAtMs + job.leaseTtlMs - fenceMarginMs(job.leaseTtlMs),
      phase: 'running',
      fence: undefined,
    };
    this.held.set(job.id, lease);
    this.armFence(lease);
    this.schedule();
    return lease;
  }

  /** Forgets a lease (its result was accepted or found lost, or it was released). */
  remove(jobId: string): void {
    const lease = this.held.get(jobId);
    if (!lease) return;
    this.deadlines.cancel(lease.fence);
    lease.fence = undefined;
    this.held.delete(jobId);
  }

  /** The leases whose job is still running (what a drain releases). */
  running(): HeldLease[] {
    return [...this.held.values()].filter((l) => l.phase === 'running');
  }

  /** Stops heartbeats; held leases are left as they are (the drain releases them first). */
  stop(): void {
    this.stopped = true;
    this.stopController.abort(new OutpostError('aborted', 'lease keeper stopped'));
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
    for (const l of this.held.values()) {
      this.deadlines.cancel(l.fence);
      l.fence = undefined;
    }
  }

  /** Sends one heartbeat now (the timer calls this; tests may too). */
  async heartbeat(): Promise<void> {
    if (this.inFlight || this.stopped || this.held.size === 0) return;
    this.inFlight = true;
    const sentAtMs = this.deps.clock.now();
    const all = [...this.held.values()].map((l) => ({ jobId: l.job.id, leaseToken: l.job.leaseToken }));
    try {
      // A renewal that answers after the next period is worth less than a fresh one: give up on it then.
      const timeoutMs = Math.max(1000, Math.floor(Math.min(...[...this.held.values()].map((l) => l.ttlMs)) / 3));
      const signal = AbortSignal.any([this.stopController.signal, AbortSignal.timeout(timeoutMs)]);
      for (let i = 0; i < all.length; i += HEARTBEAT_BATCH) {
        const leases = all.slice(i, i + HEARTBEAT_BATCH);
        this.heartbeats++;
        const res = await this.deps.api.heartbeat({ agentId: this.opts.agentId, leases }, signal);
        this.apply(res, sentAtMs, new Map(leases.map((l) => [l.jobId, l.leaseToken])));
      }
    } catch (err) {
      if (!this.stopped) {
        this.deps.metrics?.heartbeats.inc({ status: 'error' });
        // Self-fencing covers a proxy that stays away; one failure is only a warning.
        this.deps.log.warn('heartbeat failed', { code: (err as OutpostError).code, error: (err as Error).message, leases: all.length });
      }
    } finally {
      this.inFlight = false;
      this.schedule();
    }
  }

  private apply(res: HeartbeatResponse, sentAtMs: number, tokens: Map<string, string>): void {
    for (const item of res.leases) {
      const lease = this.held.get(item.jobId);
      // The job may have been re-leased to us meanwhile; only the token we sent counts.
      if (!lease || lease.job.leaseToken !== tokens.get(item.jobId)) continue;
      this.deps.metrics?.heartbeats.inc({ status: item.status });
      if (item.status === 'ok') {
        // Counted from when the heartbeat was sent: the proxy renewed at or after that moment.
        if (item.leaseTtlMs) lease.ttlMs = item.leaseTtlMs;
        lease.fenceAtMs = sentAtMs + lease.ttlMs - fenceMarginMs(lease.ttlMs);
        this.armFence(lease);
      } else {
        const err =
          item.status === 'cancelled'
            ? new OutpostError('cancelled', 'the job was cancelled')
            : new OutpostError('lease_lost', 'the lease was lost (expired or taken by another agent)', { retryable: true });
        this.end(lease, item.status, err);
      }
    }
  }

  private end(lease: HeldLease, why: LeaseEnd, reason: OutpostError): void {
    this.remove(lease.job.id);
    this.deps.metrics?.leaseLosses.inc({ reason: why });
    if (!lease.controller.aborted) lease.controller.abort(reason);
    this.deps.log.warn(`lease ended: ${why}`, { jobId: lease.job.id, type: lease.job.type, phase: lease.phase });
    this.onEnd(lease.job.id, why);
  }

  private armFence(lease: HeldLease): void {
    this.deadlines.cancel(lease.fence);
    lease.fence = undefined;
    if (this.stopped) return;
    lease.fence = this.deadlines.add(lease.fenceAtMs - this.deps.clock.now(), () => {
      lease.fence = undefined;
      if (this.held.get(lease.job.id) !== lease) return;
      this.end(lease, 'fenced', new OutpostError('lease_lost', 'no lease renewal succeeded in time; the job was stopped (self-fencing)', { retryable: true }));
    });
  }

  private schedule(): void {
    if (this.stopped || this.timer || this.inFlight || this.held.size === 0) return;
    let ttl = Infinity;
    for (const l of this.held.values()) ttl = Math.min(ttl, l.ttlMs);
    const { heartbeatFraction = 1 / 3, jitter = 0.1, random = Math.random } = this.opts;
    const periodMs = Math.max(10, ttl * heartbeatFraction * (1 + jitter * (2 * random() - 1)));
    this.timer = this.deps.clock.setTimeout(() => {
      this.timer = undefined;
      void this.heartbeat();
    }, periodMs);
  }
}
