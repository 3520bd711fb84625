import PQueue from 'p-queue';
import type { Logger } from '../log/index.js';
import type { LeaseRequest, LeaseResponse, LeasedJob } from '../protocol/schemas.js';
import type { Backoff } from '../util/backoff.js';
import { sleep, type Clock } from '../util/clock.js';
import { OutpostError } from '../util/errors.js';
import type { LifecycleState } from '../util/lifecycle.js';
import { leaseOriginMs } from './lease.js';
import type { AgentMetrics } from './metrics.js';
import { splitLease } from './answers.js';
import type { LeaseCargo } from './carry.js';
import { PollPolicy } from './poll-policy.js';
import { releaseLeases, type ReleaseApi } from './release.js';
import { UpgradeNotice } from './upgrade.js';

/** The part of the protocol client the loop uses. */
export interface LeaseApi extends ReleaseApi {
  lease(body: LeaseRequest, signal?: AbortSignal): Promise<LeaseResponse>;
}

/** Options of the lease loop. */
export interface LeaseLoopOptions {
  agentId: string;
  hostname: string;
  version: string;
  /** Resource names this agent serves (the proxy offers only their jobs, plus resourceless ones). */
  resources: string[];
  /** Jobs at once. Default 8. */
  concurrency: number;
  /** Long-poll hold asked of the proxy. Default 25 000 ms. */
  waitMs: number;
  /** Backoff after a failed poll. Default PROXY_BACKOFF (lib/util/backoff.ts): 1 s → 10 s, ×2, each delay in [ceiling, ceiling × 1.15]. */
  backoff?: Backoff;
  /** Wait after a 426 upgrade_required without Retry-After. Default 5 min (30 s – 5 min with Retry-After). */
  upgradeBackoffMs?: number;
}

/** How long refused jobs are offered back (release retried with backoff) before they are left to expire. */
const REFUSED_RELEASE_WINDOW_MS = 10_000;

/**
 * The poll loop: ONE lease request in flight, asking for exactly the free
 * slots (`concurrency − running`); when none are free it waits for a slot.
 * Jobs run in a p-queue of `concurrency`. An unreachable or refusing proxy
 * means backoff (honouring Retry-After), never a crash and never a hot loop;
 * a poll cut by an idle-cutting network is re-sent at once (PollPolicy). Jobs
 * beyond what was asked for are released at once, never run (splitLease).
 */
export class LeaseLoop {
  private _state: LifecycleState = 'idle';
  private readonly queue: PQueue;
  private runningJobs = 0;
  private slotWaiter: (() => void) | undefined;
  private pollController = new AbortController();
  private loopDone: Promise<void> | undefined;
  private readonly policy: PollPolicy;
  private readonly upgrade: UpgradeNotice;
  /** Monotonic send time of the poll in flight, if one is. */
  private pollSentAtMs: number | undefined;
  private readonly inflight = new Set<Promise<void>>();
  /** Lease calls made (for tests and the benchmark). */
  polls = 0;

  constructor(
    private readonly deps: {
      api: LeaseApi;
      clock: Clock;
      log: Logger;
      /** Runs a leased job; `leasedAtMs` (monotonic) is when its TTL started counting (lease.ts leaseOriginMs). */
      run: (job: LeasedJob, leasedAtMs: number) => Promise<void>;
      metrics?: AgentMetrics;
      /** Called when a held poll was cut by the network: it had reached the proxy (readiness). */
      onContact?: () => void;
      /** Results and renewals that ride on lease requests when the proxy takes them (carry.ts). Default: none ride. */
      cargo?: LeaseCargo;
    },
    private readonly opts: LeaseLoopOptions,
  ) {
    this.queue = new PQueue({ concurrency: opts.concurrency });
    this.upgrade = new UpgradeNotice(
      { clock: deps.clock, log: deps.log },
      { version: opts.version, ...(opts.upgradeBackoffMs !== undefined ? { refusedBackoffMs: opts.upgradeBackoffMs } : {}) },
    );
    this.policy = new PollPolicy({ log: deps.log, ...(deps.metrics ? { metrics: deps.metrics } : {}) }, { waitMs: opts.waitMs, ...(opts.backoff ? { backoff: opts.backoff } : {}) });
  }

  /** Monotonic send time of the long poll in flight, or undefined between polls (readiness: a held poll is contact). */
  get pollOpenSinceMs(): number | undefined {
    return this.pollSentAtMs;
  }

  /** The long-poll hold in use (shorter than configured after repeated idle cuts). */
  get waitMs(): number {
    return this.policy.waitMs;
  }

  get state(): LifecycleState {
    return this._state;
  }

  /** Jobs running now. */
  get running(): number {
    return this.runningJobs;
  }

  start(): void {
    if (this._state !== 'idle') return;
    this._state = 'running';
    this.loopDone = this.loop();
  }

  /** Stops leasing: aborts the open poll and waits for the loop to exit. Running jobs go on. */
  async stop(): Promise<void> {
    if (this._state === 'running') this._state = 'draining';
    this.pollController.abort(new OutpostError('aborted', 'agent is stopping'));
    this.slotWaiter?.();
    await this.loopDone;
    if (this._state !== 'stopped') this._state = 'stopped';
  }

  /** Resolves when no job runs (or at once). */
  async idle(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  private async loop(): Promise<void> {
    const signal = this.pollController.signal;
    while (!signal.aborted) {
      const free = this.opts.concurrency - this.runningJobs;
      if (free <= 0) {
        await new Promise<void>((r) => (this.slotWaiter = r));
        this.slotWaiter = undefined;
        continue;
      }
      const sentAtMs = this.deps.clock.monotonicMs();
      const max = Math.min(free, 1000);
      // Taken right before the send: results that finished by now, renewals when a heartbeat is due.
      const cargo = this.deps.cargo?.load();
      // A poll with cargo is answered without a hold (its statuses are not held back): ask for none.
      const waitMs = cargo ? 0 : this.policy.nextWaitMs();
      let jobs: LeasedJob[];
      let heldMs: number | undefined;
      this.pollSentAtMs = sentAtMs;
      try {
        this.polls++;
        const res = await this.deps.api.lease(
          {
            agentId: this.opts.agentId,
            hostname: this.opts.hostname,
            version: this.opts.version,
            resources: this.opts.resources,
            max,
            waitMs,
            ...cargo?.body,
          },
          signal,
        );
        jobs = res.jobs;
        heldMs = res.heldMs;
        this.deps.cargo?.answered(cargo, res);
        this.upgrade.answered(res);
      } catch (err) {
        this.pollSentAtMs = undefined;
        // The cargo goes back first (a stop, a refusal and a backoff must not hold a result back).
        const refusedCargo = this.deps.cargo?.failed(cargo, err) ?? false;
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- aborted during the await above; TS keeps the loop condition's narrowing.
        if (signal.aborted) break;
        if (refusedCargo) continue;
        if (UpgradeNotice.isRefusal(err)) {
          // Not retryable, yet not fatal: the agent stays up (health, metrics) and asks again much later.
          this.deps.metrics?.polls.inc({ outcome: 'error' });
          await sleep(this.deps.clock, this.upgrade.refused(err), signal).catch(() => undefined);
          continue;
        }
        // An idle cut polls again at once; any other failure waits out the backoff.
        const { cut, delayMs } = this.policy.failed(err, this.deps.clock.monotonicMs() - sentAtMs);
        if (cut) this.deps.onContact?.();
        if (delayMs > 0) await sleep(this.deps.clock, delayMs, signal).catch(() => undefined);
        continue;
      }
      this.pollSentAtMs = undefined;
      const answeredAtMs = this.deps.clock.monotonicMs();
      if (jobs.length > 0) this.deps.metrics?.leases.inc(jobs.length);
      // Never more than asked for, never a lease too short to hold: the rest goes back at once, unrun.
      const { run, release, refused } = splitLease(jobs, max);
      if (release.length > 0 || refused.duplicate) this.refuse(release, refused, max);
      // A lease's TTL counts from our send time + how long the proxy held the poll before it claimed.
      const leasedAtMs = leaseOriginMs(sentAtMs, answeredAtMs, heldMs);
      for (const job of run) this.dispatch(job, leasedAtMs);
      const pauseMs = this.policy.answered(answeredAtMs - sentAtMs, waitMs, run.length, release.length);
      if (pauseMs > 0) await sleep(this.deps.clock, pauseMs, signal).catch(() => undefined);
    }
  }

  /** Gives refused jobs back at once so that the proxy can offer them elsewhere (no attempt spent); never runs them. */
  private refuse(jobs: LeasedJob[], why: Record<string, number>, asked: number): void {
    this.deps.log.warn('the integration-proxy sent jobs this agent cannot take; giving them back', { refused: why, asked });
    if (jobs.length === 0) return;
    const leases = jobs.map((j) => ({ jobId: j.id, leaseToken: j.leaseToken }));
    void releaseLeases({ api: this.deps.api, clock: this.deps.clock, log: this.deps.log }, leases, { agentId: this.opts.agentId, windowMs: REFUSED_RELEASE_WINDOW_MS });
  }

  private dispatch(job: LeasedJob, leasedAtMs: number): void {
    this.runningJobs++;
    const p = this.queue
      .add(() => this.deps.run(job, leasedAtMs))
      .catch((err: unknown) => {
        this.deps.log.error('job runner crashed', { jobId: job.id, error: (err as Error).message });
      })
      .finally(() => {
        this.runningJobs--;
        this.inflight.delete(p);
        this.slotWaiter?.();
      });
    this.inflight.add(p);
  }
}
