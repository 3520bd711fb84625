import type { OperationContext } from '../connectors/types.js';
import type { Logger } from '../log/index.js';
import type { LeasedJob, OutputRequest, OutputResponse, ResultItem } from '../protocol/schemas.js';
import { Backoff } from '../util/backoff.js';
import { sleep, type Clock } from '../util/clock.js';
import { OutpostError, toWireError } from '../util/errors.js';
import { Deadlines } from './deadlines.js';
import type { Dispatch } from './dispatch.js';
import type { LazyAbortController } from './lazy-abort.js';
import { scrub } from './scrub.js';
import type { LeaseKeeper } from './leases.js';
import type { ResultReporter } from './reporter.js';
import type { AgentMetrics } from './metrics.js';

/** The part of the protocol client the runner uses. */
export interface OutputApi {
  output(jobId: string, body: OutputRequest, signal?: AbortSignal): Promise<OutputResponse>;
}

/** Largest page the protocol accepts; bigger pages are split. */
const MAX_RECORDS_PER_PAGE = 10_000;

/** The code a drain aborts running jobs with: they are released, not reported. */
export const SHUTDOWN_CODE = 'aborted';

/**
 * Runs one leased job: holds its lease, builds its OperationContext (signal,
 * child logger, ordered output pages), dispatches it, and hands the outcome to
 * the reporter. Never throws: every failure becomes a failed result, or
 * nothing when the lease is gone or the drain will release the job.
 */
export class JobRunner {
  private readonly deadlines: Deadlines;
  /** Histogram children by type and outcome: prom-client hashes a label object on every observe. */
  private readonly durations = new Map<string, { observe(seconds: number): void }>();

  constructor(
    private readonly deps: {
      api: OutputApi;
      clock: Clock;
      log: Logger;
      keeper: LeaseKeeper;
      reporter: ResultReporter;
      dispatch: Dispatch;
      metrics?: AgentMetrics;
      /** Where job timeouts wait (shared with the keeper's fences). Default: its own, on `clock`. */
      deadlines?: Deadlines;
    },
  ) {
    this.deadlines = deps.deadlines ?? new Deadlines(deps.clock);
  }

  async run(job: LeasedJob, receivedAtMs: number): Promise<void> {
    const { clock, metrics } = this.deps;
    const lease = this.deps.keeper.add(job, receivedAtMs);
    const { controller } = lease;
    // The child logger, the signal and the page writer are made on first use: a job that
    // neither logs, listens nor lists (most of them at high rates) pays for none of them.
    let log: Logger | undefined;
    const jobLog = () => (log ??= this.deps.log.child({ jobId: job.id, type: job.type, resource: job.resource, attempt: job.attempt }));
    let writer: OperationContext['writePage'] | undefined;
    const ctx: OperationContext = {
      get signal() {
        return controller.signal;
      },
      get log() {
        return jobLog();
      },
      writePage: (records) => (writer ??= this.pageWriter(job, controller, jobLog))(records),
    };
    const startedAtMs = clock.now();
    const timeout = this.deadlines.add(job.timeoutMs, () => {
      if (!controller.aborted) controller.abort(new OutpostError('timeout', `the job ran longer than its timeoutMs (${job.timeoutMs} ms)`, { retryable: true }));
    });
    // winston formats (and redacts) a line before its level is checked: skip the work when debug is off.
    const debug = this.deps.log.isDebugEnabled();
    metrics?.inFlight.inc();
    let outcome = 'stopped';
    if (debug) jobLog().debug('job started');
    let item: ResultItem | undefined;
    try {
      const result = await this.deps.dispatch(job, ctx);
      // A result that arrives after the lease ended is worthless: another agent may run the job.
      if (controller.aborted) throw controller.reason;
      item = { jobId: job.id, leaseToken: job.leaseToken, outcome: 'succeeded', result: scrub(result) };
      outcome = 'succeeded';
      if (debug) jobLog().debug('job succeeded');
    } catch (err) {
      const reason = controller.aborted ? controller.reason : err;
      const code = reason instanceof OutpostError ? reason.code : undefined;
      if (controller.aborted && code !== 'timeout') {
        // lost/cancelled/fenced: the keeper already let the lease go; shutdown: the drain releases it.
        jobLog().info('job stopped', { code });
        return;
      }
      const error = toWireError(reason);
      outcome = 'failed';
      item = { jobId: job.id, leaseToken: job.leaseToken, outcome: 'failed', error: { ...error, message: error.message.slice(0, 4000) } };
      jobLog().warn('job failed', { code: error.code, error: error.message, retryable: error.retryable });
    } finally {
      this.deadlines.cancel(timeout);
      if (metrics) {
        metrics.inFlight.dec();
        this.duration(job.type, outcome).observe((clock.now() - startedAtMs) / 1000);
      }
    }
    if (item) this.deps.reporter.submit(item);
  }

  private duration(type: string, outcome: string): { observe(seconds: number): void } {
    const key = `${type}\u0000${outcome}`;
    let child = this.durations.get(key);
    if (!child) {
      child = this.deps.metrics!.jobDuration.labels({ type, outcome });
      this.durations.set(key, child);
    }
    return child;
  }

  /**
   * `writePage`: sends pages with seq 0, 1, 2…; resolves once stored
   * (backpressure); retries transient failures with backoff; a page the proxy
   * finds too large (413) is split in two, each half with its own seq.
   */
  private pageWriter(job: LeasedJob, controller: LazyAbortController, log: () => Logger): OperationContext['writePage'] {
    let seq = 0;
    const backoff = new Backoff();
    const send = async (page: unknown[]): Promise<void> => {
      for (;;) {
        if (controller.signal.aborted) throw controller.signal.reason;
        try {
          await this.deps.api.output(job.id, { leaseToken: job.leaseToken, seq, records: page }, controller.signal);
          backoff.reset();
          seq++;
          return;
        } catch (err) {
          if (controller.signal.aborted) throw controller.signal.reason;
          const e = err instanceof OutpostError ? err : new OutpostError('internal', String(err));
          if (e.code === 'lease_lost') {
            this.deps.keeper.remove(job.id);
            controller.abort(new OutpostError('lease_lost', 'the lease was lost while writing output', { retryable: true }));
            throw controller.signal.reason;
          }
          if (e.code === 'too_large' && page.length > 1) {
            const half = Math.ceil(page.length / 2);
            await send(page.slice(0, half));
            await send(page.slice(half));
            return;
          }
          if (!e.retryable && e.code !== 'unauthorized') throw e;
          const delayMs = backoff.next(e.retryAfterMs);
          this.deps.metrics?.backoffs.inc({ call: 'output' });
          log().warn('writing an output page failed; retrying', { seq, code: e.code, error: e.message, retryInMs: delayMs });
          await sleep(this.deps.clock, delayMs, controller.signal);
        }
      }
    };
    return async (records) => {
      for (let i = 0; i === 0 || i < records.length; i += MAX_RECORDS_PER_PAGE) {
        await send(scrub(records.slice(i, i + MAX_RECORDS_PER_PAGE)) as unknown[]);
      }
    };
  }
}

export { scrub } from './scrub.js';
