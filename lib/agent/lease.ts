import type { LeasedJob, LeaseRef } from '../protocol/schemas.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import { OutpostError } from '../util/errors.js';

/**
 * One leased job, from the lease answer until the agent is done with it.
 * Everything that may act on a job asks its Lease first, so the two promises
 * of the protocol are kept here:
 *
 * - **Never run a job twice at once.** The proxy gives a job to another agent
 *   once its lease expires: TTL after the claim, or after the last renewal.
 *   This agent's *fence* ends before that, counted on the monotonic clock from
 *   when the poll or heartbeat was SENT (+ `heldMs`, the proxy's hold before
 *   the claim), so time this process spent frozen, slow or waiting for a queue
 *   slot counts against the lease too. A job starts only before its fence
 *   (`start`); no output page or result goes out after it (`live`); at the
 *   fence the job's signal is aborted and the lease ends. `lost` and
 *   `cancelled` from a heartbeat end it the same way.
 * - **Never lose one.** A lease leaves the agent only as `reporting → ended`
 *   (the proxy answered its result), `released` (a drain gave it back: no
 *   attempt spent) or `ended` because it is no longer ours (the proxy runs it
 *   again after expiry). A result is queued at most once (`startReporting`), and
 *   a released job is never reported.
 *
 * States: `running` (held; the job runs or is about to) → `reporting` (its
 * result is on its way) → `ended`; `running` → `released`; `running |
 * reporting` → `ended`. `released` and `ended` are final.
 */
export type LeaseState = 'running' | 'reporting' | 'released' | 'ended';

/** Why a job's signal was aborted. `lost | cancelled | fenced` also end the lease: it is no longer ours. */
export type StopReason = 'lost' | 'cancelled' | 'fenced' | 'timeout' | 'shutdown';

/** The error a job's signal is aborted with, per reason (its `code` is what a connector and a result see). */
function stopError(reason: StopReason, job: LeasedJob): OutpostError {
  switch (reason) {
    case 'lost':
      return new OutpostError('lease_lost', 'the lease was lost (expired or taken by another agent)', { retryable: true });
    case 'cancelled':
      return new OutpostError('cancelled', 'the job was cancelled');
    case 'fenced':
      return new OutpostError('lease_lost', 'the lease ran out before a renewal succeeded; the job was stopped (self-fencing)', { retryable: true });
    case 'timeout':
      return new OutpostError('timeout', `the job ran longer than its timeoutMs (${job.timeoutMs} ms)`, { retryable: true });
    case 'shutdown':
      return new OutpostError('aborted', 'the agent is shutting down', { retryable: true });
  }
}

/** Node turns a delay above 2^31 − 1 ms into 1 ms: a huge TTL or timeout must not become a hot loop. */
function timerDelayMs(ms: number): number {
  return Math.min(Math.max(0, Math.ceil(ms)), 2_147_483_647);
}

const GONE: ReadonlySet<StopReason> = new Set(['lost', 'cancelled', 'fenced']);

/**
 * The self-fencing margin: 2 s as in DESIGN, but at most a quarter of the TTL so
 * that short test TTLs (1.5 s) still leave the job time to run between renewals.
 */
export function fenceMarginMs(ttlMs: number): number {
  return Math.min(2000, Math.floor(ttlMs / 4));
}

/**
 * When a lease answer's TTLs start, on the monotonic clock: the poll's send
 * time + `heldMs` (how long the proxy held the poll before it claimed). The
 * proxy stamps the expiry at or after that moment, so the fence can only be
 * early, never late. `heldMs` is bounded by the round trip we measured (a
 * proxy cannot have claimed after we read its answer). A proxy that sends no
 * `heldMs` (older than this protocol addition) gets the old rule: counted from
 * when the answer was read.
 */
export function leaseOriginMs(sentAtMs: number, receivedAtMs: number, heldMs: number | undefined): number {
  if (heldMs === undefined || !Number.isFinite(heldMs)) return receivedAtMs;
  return sentAtMs + Math.min(Math.max(0, heldMs), Math.max(0, receivedAtMs - sentAtMs));
}

/** Called once when a lease becomes `released` or `ended`; `gone` says why when it is no longer ours. */
export type LeaseClosed = (lease: Lease, gone: StopReason | undefined) => void;

export class Lease {
  private readonly controller = new AbortController();
  private current: LeaseState = 'running';
  private reason: StopReason | undefined;
  private started = false;
  private ttl: number;
  private fenceAt: number;
  private fenceTimer: TimerHandle | undefined;
  private timeoutTimer: TimerHandle | undefined;

  /**
   * @param leasedAtMs Monotonic time its TTL counts from (`leaseOriginMs`).
   * @param onClosed The keeper's hook: forget the lease, count a loss.
   */
  constructor(
    readonly job: LeasedJob,
    leasedAtMs: number,
    private readonly clock: Clock,
    private readonly onClosed: LeaseClosed = () => {
      // No-op: nobody else tracks this lease.
    },
  ) {
    this.ttl = job.leaseTtlMs;
    this.fenceAt = leasedAtMs + this.ttl - fenceMarginMs(this.ttl);
    this.armFence();
  }

  get state(): LeaseState {
    return this.current;
  }

  /** The first reason the job was stopped for, if it was. */
  get stopReason(): StopReason | undefined {
    return this.reason;
  }

  /** The job's signal: aborted with `stopError(reason)` on every stop. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** The TTL the proxy last gave (ms). */
  get ttlMs(): number {
    return this.ttl;
  }

  /** The fence, on the monotonic clock: the last send time + TTL − margin. */
  get fenceAtMs(): number {
    return this.fenceAt;
  }

  get ref(): LeaseRef {
    return { jobId: this.job.id, leaseToken: this.job.leaseToken };
  }

  /** Still ours (`running` or `reporting`)? Heartbeats renew only these. */
  get held(): boolean {
    return this.current === 'running' || this.current === 'reporting';
  }

  /**
   * True while the lease is held and before its fence. A fence already passed
   * ends the lease now: its timer may not have fired yet, since a process
   * resumed after SIGSTOP handles the answers waiting on its sockets before
   * its overdue timers. Ask this before anything goes out for the job.
   */
  live(): boolean {
    if (!this.held) return false;
    if (this.clock.monotonicMs() >= this.fenceAt) {
      this.stop('fenced');
      return false;
    }
    return true;
  }

  /**
   * Right before the job starts (its queue slot is open): false when it must
   * not start, because the lease was stopped or its fence has passed (the proxy
   * may have given the job to another agent already; the lease is ended as
   * `fenced` and left to expire there). Otherwise arms the job's `timeoutMs`.
   */
  start(): boolean {
    if (this.started || this.current !== 'running' || this.reason || !this.live()) return false;
    this.started = true;
    this.timeoutTimer = this.clock.setTimeout(() => {
      this.timeoutTimer = undefined;
      this.stop('timeout');
    }, timerDelayMs(this.job.timeoutMs));
    return true;
  }

  /** Throws the stop error if the job was stopped or the lease is not live: before each output page. */
  assertLive(): void {
    if (this.reason) throw this.controller.signal.reason;
    if (!this.live()) throw this.controller.signal.reason ?? stopError('lost', this.job);
  }

  /** A renewal succeeded for the heartbeat sent at `sentAtMs` (monotonic): the fence moves to sentAt + TTL − margin. */
  renew(sentAtMs: number, ttlMs?: number): void {
    if (!this.held) return;
    if (ttlMs) this.ttl = ttlMs;
    this.fenceAt = sentAtMs + this.ttl - fenceMarginMs(this.ttl);
    this.armFence();
  }

  /**
   * Aborts the job's signal (the first reason wins). `lost`, `cancelled` and
   * `fenced` also end the lease: nothing may be sent for it any more. `timeout`
   * keeps it (the failure is reported); `shutdown` comes with `release`.
   */
  stop(reason: StopReason): void {
    if (!this.held) return;
    if (!this.reason) {
      this.reason = reason;
      this.controller.abort(stopError(reason, this.job));
    }
    if (GONE.has(reason)) this.close('ended', reason);
  }

  /**
   * The job finished (or failed, or timed out) and its result is to be sent:
   * `running → reporting`, once. False when there is nothing to report any more
   * (released, ended, past the fence, or stopped for another reason than its timeout).
   */
  startReporting(): boolean {
    if (this.current !== 'running' || (this.reason && this.reason !== 'timeout') || !this.live()) return false;
    this.current = 'reporting';
    this.clearTimeoutTimer();
    return true;
  }

  /**
   * The drain gives a still-running job back: aborts it (`shutdown`) and
   * returns its ref for the `release` call, or undefined when it is not
   * running (its result is already on its way, or the lease is gone).
   */
  release(): LeaseRef | undefined {
    if (this.current !== 'running') return undefined;
    if (!this.reason) {
      this.reason = 'shutdown';
      this.controller.abort(stopError('shutdown', this.job));
    }
    this.close('released', undefined);
    return this.ref;
  }

  /** The proxy answered the result (accepted or lost), or the agent stops holding it: final. */
  end(): void {
    if (this.held) this.close('ended', undefined);
  }

  private close(state: 'released' | 'ended', gone: StopReason | undefined): void {
    this.current = state;
    this.clearTimeoutTimer();
    if (this.fenceTimer) this.clock.clearTimeout(this.fenceTimer);
    this.fenceTimer = undefined;
    this.onClosed(this, gone);
  }

  private clearTimeoutTimer(): void {
    if (this.timeoutTimer) this.clock.clearTimeout(this.timeoutTimer);
    this.timeoutTimer = undefined;
  }

  private armFence(): void {
    if (this.fenceTimer) this.clock.clearTimeout(this.fenceTimer);
    this.fenceTimer = this.clock.setTimeout(() => {
      this.fenceTimer = undefined;
      // A timer may fire a fraction of a millisecond early (whole-ms timer wheel): then wait the rest.
      if (this.live()) this.armFence();
    }, timerDelayMs(this.fenceAt - this.clock.monotonicMs()));
  }
}
