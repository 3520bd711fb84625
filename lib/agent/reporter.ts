import type { Logger } from '../log/index.js';
import type { ResultItem, ResultsRequest, ResultsResponse, ResultStatus } from '../protocol/schemas.js';
import { Backoff } from '../util/backoff.js';
import { sleep, type Clock, type TimerHandle } from '../util/clock.js';
import { OutpostError, coerceError } from '../util/errors.js';
import type { Lease } from './lease.js';
import type { AgentMetrics } from './metrics.js';

/** The part of the protocol client the reporter uses. */
export interface ResultsApi {
  results(body: ResultsRequest, signal?: AbortSignal): Promise<ResultsResponse>;
}

/** Options of the result reporter. */
export interface ResultReporterOptions {
  agentId: string;
  /**
   * How long a result waits for others to join its call (counted from when it
   * was queued; a call already in flight may make it wait longer). Default 5 ms.
   */
  coalesceMs?: number;
  /** Results per call (the protocol allows 1 000). Default 1 000. */
  maxBatch?: number;
  /** Backoff between failed calls. Default 1 s → 30 s, ×2, full jitter. */
  backoff?: Backoff;
}

/** A result waiting to be sent, with the lease it belongs to. */
interface Queued {
  lease: Lease;
  item: ResultItem;
}

/**
 * Results handed to the lease loop to ride on its next lease request. They
 * stay the reporter's: `settle` ends the leases the proxy answered and takes
 * back the rest; `fail` takes them all back. Either is called exactly once.
 */
export interface CarriedResults {
  readonly items: ResultItem[];
  /** The lease answer's `results` (undefined when it had none: nothing was recorded, as far as we know). */
  settle(statuses: readonly ResultStatus[] | undefined): void;
  /** The lease call failed: every result is sent again (by the next poll or a `results` call). */
  fail(): void;
}

/**
 * Sends job results, coalescing those that finish together into one
 * `results` call, or handing them to the lease loop to ride on its next
 * lease request (`takeCarried`) when the proxy takes them there. A failed
 * call is retried with backoff; a result is dropped only when its lease is no
 * longer ours (lost, cancelled, past its fence), never because the proxy was
 * briefly away. The lease stays held, and heart-beaten, until the proxy
 * answers `accepted` or `lost`.
 *
 * A lease request that carries results is answered without a hold, so it is
 * treated like a `results` call in flight: what queues meanwhile waits for it
 * to end, then rides on the next poll or goes out in a `results` call of its
 * own after `coalesceMs`. A parked poll never carries a result, so it never
 * delays one.
 */
export class ResultReporter {
  private queue: Queued[] = [];
  private timer: TimerHandle | undefined;
  private loop: Promise<void> | undefined;
  private readonly backoff: Backoff;
  private readonly stopController = new AbortController();
  private singles = false;
  /** When the oldest result not yet taken into a call was queued. */
  private waitingSinceMs: number | undefined;
  private idleWaiters: Array<() => void> = [];
  /** The batch of the `results` call in flight (not to be carried meanwhile). */
  private inCall: ReadonlySet<Queued> | undefined;
  /** Lease requests in flight that carry results of this reporter. */
  private riding = 0;
  /** `results` calls sent (for tests and the benchmark). */
  calls = 0;
  /** Results that rode on a lease request and were answered there (for tests and the benchmark). */
  carried = 0;

  constructor(
    private readonly deps: { api: ResultsApi; clock: Clock; log: Logger; metrics?: AgentMetrics },
    private readonly opts: ResultReporterOptions,
  ) {
    this.backoff = opts.backoff ?? new Backoff();
  }

  /** Results waiting to be sent or in flight. */
  get pending(): number {
    return this.queue.length + (this.loop ? 1 : 0) + this.riding;
  }

  /**
   * Queues the result of `lease`'s job; its lease moves to `reporting`, so a
   * drain does not release it. Ignored when the lease has nothing to report
   * any more (released, gone, past its fence) or already reported.
   */
  submit(lease: Lease, item: ResultItem): void {
    if (item.jobId !== lease.job.id || item.leaseToken !== lease.job.leaseToken || !lease.startReporting()) return;
    this.queue.push({ lease, item });
    this.waitingSinceMs ??= this.deps.clock.now();
    this.schedule();
  }

  /**
   * Hands up to `max` waiting results to the lease loop for its next lease
   * request, or undefined when none waits. Results whose lease is no longer
   * ours are dropped first, as before a `results` call.
   */
  takeCarried(max = this.opts.maxBatch ?? 1000): CarriedResults | undefined {
    if (this.queue.length === 0 || this.stopController.signal.aborted) return undefined;
    this.queue = this.queue.filter((q) => q.lease.live());
    let batch: Queued[];
    if (!this.inCall) batch = this.queue.splice(0, max);
    else {
      // What the results call in flight sends stays with it.
      const busy = this.inCall;
      batch = this.queue.filter((q) => !busy.has(q)).slice(0, max);
      const taken = new Set(batch);
      this.queue = this.queue.filter((q) => !taken.has(q));
    }
    if (batch.length === 0) return undefined;
    if (this.queue.length === 0) {
      this.waitingSinceMs = undefined;
      if (this.timer) this.deps.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.riding++;
    let done = false;
    const end = (back: Queued[]) => {
      if (done) return;
      done = true;
      this.riding--;
      this.takeBack(back);
    };
    return {
      items: batch.map((q) => q.item),
      settle: (statuses) => {
        const status = new Map(statuses?.map((r) => [r.jobId, r.status]));
        const back: Queued[] = [];
        let lost = 0;
        for (const q of batch) {
          const s = status.get(q.item.jobId);
          if (s === undefined) back.push(q);
          else {
            if (s === 'lost') lost++;
            this.carried++;
            // Answered either way: the job is the proxy's again.
            q.lease.end();
          }
        }
        // One line per batch, not per job: the ids are in the proxy's log.
        if (lost > 0) this.deps.log.warn('results refused: their leases were lost', { lost, jobIds: batch.filter((q) => status.get(q.item.jobId) === 'lost').slice(0, 20).map((q) => q.item.jobId) });
        end(back);
      },
      fail: () => end(batch),
    };
  }

  /** Results back from a lease request (failed, or not answered): sent again at once, ahead of newer ones. */
  private takeBack(back: Queued[]): void {
    if (this.stopController.signal.aborted) {
      this.wakeIdleIfDone();
      return;
    }
    if (back.length > 0) {
      this.queue = [...back, ...this.queue];
      // They have waited their window already.
      this.waitingSinceMs = this.deps.clock.now() - (this.opts.coalesceMs ?? 5);
    }
    if (this.queue.length > 0) this.schedule();
    else this.wakeIdleIfDone();
  }

  private wakeIdleIfDone(): void {
    if (!this.loop && this.riding === 0 && (this.queue.length === 0 || this.stopController.signal.aborted)) this.wakeIdle();
  }

  /** Resolves when every queued result has been answered or dropped (the drain's flush). */
  async flush(): Promise<void> {
    if (this.timer) {
      this.deps.clock.clearTimeout(this.timer);
      this.timer = undefined;
      this.kick();
    }
    if (!this.loop && this.queue.length === 0 && this.riding === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops retrying; unsent results stay unsent (their leases expire and the jobs run again). */
  stop(): void {
    this.stopController.abort(new OutpostError('aborted', 'result reporter stopped'));
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.queue = [];
    this.wakeIdle();
  }

  /**
   * Sends once the oldest waiting result has waited `coalesceMs` (at once when
   * a full batch waits). Results that queued during a call get the same window
   * rather than a call of their own straight after: under load that makes a
   * call per window instead of a call per round trip.
   */
  private schedule(): void {
    // A lease request carrying results is answered without a hold: what queued meanwhile waits for it (takeBack).
    if (this.loop || this.timer || this.riding > 0 || this.stopController.signal.aborted) return;
    const maxBatch = this.opts.maxBatch ?? 1000;
    const waitedMs = this.deps.clock.now() - (this.waitingSinceMs ?? this.deps.clock.now());
    // A flush (the drain) is waiting: nothing waits for company any more.
    const now = this.queue.length >= maxBatch || this.idleWaiters.length > 0;
    const delayMs = now ? 0 : Math.max(0, (this.opts.coalesceMs ?? 5) - waitedMs);
    if (delayMs === 0) {
      this.kick();
      return;
    }
    this.timer = this.deps.clock.setTimeout(() => {
      this.timer = undefined;
      this.kick();
    }, delayMs);
  }

  private kick(): void {
    if (this.loop || this.stopController.signal.aborted) return;
    this.loop = this.run().finally(() => {
      this.loop = undefined;
      this.inCall = undefined;
      if (this.queue.length > 0 && !this.stopController.signal.aborted) this.schedule();
      else this.wakeIdleIfDone();
    });
  }

  private wakeIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private async run(): Promise<void> {
    const signal = this.stopController.signal;
    while (this.queue.length > 0 && !signal.aborted) {
      // Drop results whose lease is no longer ours (lost, cancelled, past its fence): none goes out after that.
      this.queue = this.queue.filter((q) => q.lease.live());
      if (this.queue.length === 0) break;
      const batch = this.queue.slice(0, this.singles ? 1 : (this.opts.maxBatch ?? 1000));
      this.inCall = new Set(batch);
      // Everything waiting is in this call: the next result to queue starts a new window.
      if (batch.length === this.queue.length) this.waitingSinceMs = undefined;
      try {
        this.calls++;
        const res = await this.deps.api.results({ agentId: this.opts.agentId, results: batch.map((q) => q.item) }, signal);
        this.backoff.reset();
        const wasSingles = this.singles;
        this.singles = false;
        this.settle(batch, res);
        // What queued meanwhile waits for its window (schedule); a batch being searched one by one goes on.
        if (!wasSingles) return;
      } catch (err) {
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- aborted during the await above; TS keeps the loop condition's narrowing.
        if (signal.aborted) return;
        const e = coerceError(err);
        if (!e.retryable && e.code !== 'unauthorized' && this.reject(batch, e)) continue;
        const delayMs = this.backoff.next(e.retryAfterMs);
        this.deps.metrics?.backoffs.inc({ call: 'results' });
        this.deps.log.warn('sending results failed; retrying', { code: e.code, error: e.message, results: batch.length, retryInMs: delayMs });
        await sleep(this.deps.clock, delayMs, signal).catch(() => undefined);
      }
    }
  }

  private settle(batch: Queued[], res: ResultsResponse): void {
    const status = new Map(res.results.map((r) => [r.jobId, r.status]));
    const sent = new Set(batch);
    this.queue = this.queue.filter((q) => !sent.has(q));
    let lost = 0;
    for (const { lease, item } of batch) {
      if (status.get(item.jobId) === 'lost') lost++;
      // Answered either way: the job is the proxy's again.
      lease.end();
    }
    // One line per batch, not per job.
    if (lost > 0) this.deps.log.warn('results refused: their leases were lost', { lost, jobIds: batch.filter((q) => status.get(q.item.jobId) === 'lost').slice(0, 20).map((q) => q.item.jobId) });
  }

  /**
   * The proxy refused a batch for good (400/413, e.g. a result too large).
   * Several items: send them one by one to find the culprit. One success:
   * report it as failed instead, so the job still ends. Returns false to back off.
   */
  private reject(batch: Queued[], e: OutpostError): boolean {
    if (batch.length > 1) {
      this.singles = true;
      return true;
    }
    const queued = batch[0];
    if (!queued) throw new OutpostError('internal', 'reporter: an empty batch was refused');
    const { item } = queued;
    const idx = this.queue.indexOf(queued);
    if (item.outcome === 'succeeded' && idx >= 0) {
      const code = e.code === 'too_large' ? 'too_large' : 'invalid_request';
      this.queue[idx] = {
        lease: queued.lease,
        item: {
          jobId: item.jobId,
          leaseToken: item.leaseToken,
          outcome: 'failed',
          error: { code, message: `the integration-proxy refused the result: ${e.message}`.slice(0, 4000), retryable: false },
        },
      };
      return true;
    }
    this.deps.log.error('the integration-proxy refused a result; dropping it', { jobId: item.jobId, code: e.code, error: e.message });
    if (idx >= 0) this.queue.splice(idx, 1);
    // Nothing more can be said for it: the lease expires on the proxy and the job runs again.
    queued.lease.end();
    return true;
  }
}
