import PQueue from 'p-queue';
import type { Logger } from '../log/index.js';
import type { LeaseRequest, LeaseResponse, LeasedJob } from '../protocol/schemas.js';
import { Backoff } from '../util/backoff.js';
import { sleep, type Clock } from '../util/clock.js';
import { OutpostError } from '../util/errors.js';
import type { LifecycleState } from '../util/lifecycle.js';
import type { AgentMetrics } from './metrics.js';

/** The part of the protocol client the loop uses. */
export interface LeaseApi {
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
  /** Backoff after a failed poll. Default 1 s → 30 s, ×2, full jitter. */
  backoff?: Backoff;
}

/**
 * The poll loop: ONE lease request in flight, asking for exactly the free
 * slots (`concurrency − running`); when none are free it waits for a slot.
 * Jobs run in a p-queue of `concurrency`. An unreachable or refusing proxy
 * means backoff (honouring Retry-After), never a crash and never a hot loop.
 */
export class LeaseLoop {
  private _state: LifecycleState = 'idle';
  private readonly queue: PQueue;
  private runningJobs = 0;
  private slotWaiter: (() => void) | undefined;
  private pollController = new AbortController();
  private loopDone: Promise<void> | undefined;
  private readonly backoff: Backoff;
  private readonly inflight = new Set<Promise<void>>();
  /** Lease calls made (for tests and the benchmark). */
  polls = 0;

  constructor(
    private readonly deps: {
      api: LeaseApi;
      clock: Clock;
      log: Logger;
      run: (job: LeasedJob, receivedAtMs: number) => Promise<void>;
      metrics?: AgentMetrics;
    },
    private readonly opts: LeaseLoopOptions,
  ) {
    this.queue = new PQueue({ concurrency: opts.concurrency });
    this.backoff = opts.backoff ?? new Backoff();
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
      const startedAtMs = this.deps.clock.now();
      let jobs: LeasedJob[];
      try {
        this.polls++;
        const res = await this.deps.api.lease(
          {
            agentId: this.opts.agentId,
            hostname: this.opts.hostname,
            version: this.opts.version,
            resources: this.opts.resources,
            max: Math.min(free, 1000),
            waitMs: this.opts.waitMs,
          },
          signal,
        );
        jobs = res.jobs;
      } catch (err) {
        if (signal.aborted) break;
        this.deps.metrics?.polls.inc({ outcome: 'error' });
        await this.pause(err);
        continue;
      }
      const receivedAtMs = this.deps.clock.now();
      this.deps.metrics?.polls.inc({ outcome: 'ok' });
      if (jobs.length > 0) this.deps.metrics?.leases.inc(jobs.length);
      if (this.backoff.attempts > 0) this.deps.log.info('integration-proxy reachable again');
      this.backoff.reset();
      for (const job of jobs) this.dispatch(job, receivedAtMs);
      // A proxy that answers empty at once must not turn this into a hot loop.
      if (jobs.length === 0 && receivedAtMs - startedAtMs < 50 && this.opts.waitMs >= 1000) {
        await sleep(this.deps.clock, 1000, signal).catch(() => undefined);
      }
    }
  }

  private dispatch(job: LeasedJob, receivedAtMs: number): void {
    this.runningJobs++;
    const p = this.queue
      .add(() => this.deps.run(job, receivedAtMs))
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

  private async pause(err: unknown): Promise<void> {
    const e = err instanceof OutpostError ? err : new OutpostError('internal', String(err));
    const delayMs = this.backoff.next(e.retryAfterMs);
    this.deps.metrics?.backoffs.inc({ call: 'lease' });
    const fields = { code: e.code, error: e.message, retryInMs: delayMs, failures: this.backoff.attempts };
    // Credentials and TLS problems need a human; an outage is expected now and then.
    if (['unauthorized', 'forbidden', 'proxy_error', 'tls_error'].includes(e.code)) this.deps.log.error('lease request failed', fields);
    else this.deps.log.warn('lease request failed', fields);
    await sleep(this.deps.clock, delayMs, this.pollController.signal).catch(() => undefined);
  }
}
