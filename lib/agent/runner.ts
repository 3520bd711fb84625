import type { OperationContext } from '../connectors/types.js';
import type { Logger } from '../log/index.js';
import type { LeasedJob, OutputRequest, OutputResponse, ResultItem } from '../protocol/schemas.js';
import { Backoff } from '../util/backoff.js';
import type { Clock } from '../util/clock.js';
import { retry } from '../util/retry.js';
import { coerceError, toWireError } from '../util/errors.js';
import type { Dispatch } from './dispatch.js';
import type { Lease } from './lease.js';
import type { LeaseKeeper } from './leases.js';
import type { ResultReporter } from './reporter.js';
import type { AgentMetrics } from './metrics.js';
import { auditFields, isWriteType, type AuditOutcome } from './audit.js';

/** The part of the protocol client the runner uses. */
export interface OutputApi {
  output(jobId: string, body: OutputRequest, signal?: AbortSignal): Promise<OutputResponse>;
}

/** Largest page the protocol accepts; bigger pages are split. */
const MAX_RECORDS_PER_PAGE = 10_000;

/**
 * Runs one leased job: holds its lease (lease.ts), builds its
 * OperationContext (the lease's signal, a child logger, ordered output
 * pages), dispatches it, and hands the outcome to the reporter. Never throws:
 * every failure becomes a failed result, or nothing when the lease is gone or
 * the drain released the job. A job whose fence passed before its queue slot
 * opened is not started at all.
 */
export class JobRunner {
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
    },
  ) {}

  /** Runs `job`, whose TTL counts from `leasedAtMs` on the monotonic clock (lease.ts leaseOriginMs). */
  async run(job: LeasedJob, leasedAtMs: number): Promise<void> {
    const { clock, metrics } = this.deps;
    const lease = this.deps.keeper.add(job, leasedAtMs);
    // The child logger and the page writer are made on first use: a job that
    // neither logs nor lists (most of them at high rates) pays for neither.
    let log: Logger | undefined;
    const jobLog = () => (log ??= this.deps.log.child({ jobId: job.id, type: job.type, resource: job.resource, attempt: job.attempt }));
    if (!lease.start()) {
      // Past its fence already (a frozen or overloaded process): the proxy may have given it to
      // another agent. Not started, nothing reported: the lease expires there and the job runs again.
      jobLog().warn('job not started: its lease ran out before it could start', { stopReason: lease.stopReason });
      return;
    }
    let writer: OperationContext['writePage'] | undefined;
    const ctx: OperationContext = {
      // Made on first use: most jobs never look at their signal, and an AbortSignal per job showed in profiles.
      get signal() {
        return lease.signal;
      },
      get log() {
        return jobLog();
      },
      writePage: (records) => (writer ??= this.pageWriter(lease, jobLog))(records),
    };
    const startedAtMs = clock.monotonicMs();
    // winston formats (and redacts) a line before its level is checked: skip the work when debug is off.
    const debug = this.deps.log.enabled('debug');
    let outcome = 'stopped';
    if (debug) jobLog().debug('job started');
    let item: ResultItem | undefined;
    // Writes get one `audit` line at info, however they end (audit.ts says which fields).
    const audit = isWriteType(job.type)
      ? (end: Omit<AuditOutcome, 'durationMs'>) => this.deps.log.info('audit', auditFields(job, { ...end, durationMs: clock.monotonicMs() - startedAtMs }))
      : undefined;
    try {
      const result = await this.deps.dispatch(job, ctx);
      // A result that arrives after the job was stopped is worthless (lost, fenced, released) or a timeout.
      if (lease.stopReason) throw lease.signal.reason;
      item = { jobId: job.id, leaseToken: job.leaseToken, outcome: 'succeeded', result: result === undefined ? null : result };
      outcome = 'succeeded';
      audit?.({ outcome: 'succeeded', result });
      if (debug) jobLog().debug('job succeeded');
    } catch (err) {
      const stopped = lease.stopReason;
      if (stopped && stopped !== 'timeout') {
        // lost/cancelled/fenced: the lease is no longer ours; shutdown: the drain released it.
        jobLog().info('job stopped', { stopReason: stopped });
        audit?.({ outcome: 'stopped', stopReason: stopped });
        return;
      }
      const error = toWireError(stopped ? lease.signal.reason : err);
      outcome = 'failed';
      item = { jobId: job.id, leaseToken: job.leaseToken, outcome: 'failed', error: { ...error, message: error.message.slice(0, 4000) } };
      jobLog().warn('job failed', { code: error.code, error: error.message, retryable: error.retryable });
      audit?.({ outcome: 'failed', code: error.code });
    } finally {
      // The in-flight gauge is read from the loop when scraped (metrics.ts): nothing per job but the duration.
      if (metrics) this.duration(job.type, outcome).observe((clock.monotonicMs() - startedAtMs) / 1000);
    }
    if (item) this.deps.reporter.submit(lease, item);
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
   * finds too large (413) is split in two, each half with its own seq. No page
   * goes out once the job was stopped or its lease's fence has passed.
   */
  private pageWriter(lease: Lease, log: () => Logger): OperationContext['writePage'] {
    const { job } = lease;
    let seq = 0;
    const backoff = new Backoff();
    const send = async (page: unknown[]): Promise<void> => {
      try {
        await retry(
          async () => {
            lease.assertLive();
            await this.deps.api.output(job.id, { leaseToken: job.leaseToken, seq, records: page }, lease.signal);
          },
          {
            clock: this.deps.clock,
            backoff,
            signal: lease.signal,
            // Lost, stopped and splittable pages are handled below, not retried; 401 may be a token being rotated.
            shouldRetry: (e) => !lease.stopReason && e.code !== 'lease_lost' && !(e.code === 'too_large' && page.length > 1) && (e.retryable || e.code === 'unauthorized'),
            onRetry: (e, delayMs) => {
              this.deps.metrics?.backoffs.inc({ call: 'output' });
              log().warn('writing an output page failed; retrying', { seq, code: e.code, error: e.message, retryInMs: delayMs });
            },
          },
        );
        seq++;
      } catch (err) {
        // Stopped, or no longer held (assertLive's own error): nothing more goes out.
        if (lease.stopReason || !lease.held) throw lease.signal.reason ?? err;
        const e = coerceError(err);
        if (e.code === 'lease_lost') {
          lease.stop('lost');
          throw lease.signal.reason;
        }
        if (e.code === 'too_large' && page.length > 1) {
          const half = Math.ceil(page.length / 2);
          await send(page.slice(0, half));
          await send(page.slice(half));
          return;
        }
        throw e;
      }
    };
    return async (records) => {
      for (let i = 0; i === 0 || i < records.length; i += MAX_RECORDS_PER_PAGE) {
        // Records go out as the connector made them: never rewritten by value (see lib/util/redact.ts).
        await send(records.slice(i, i + MAX_RECORDS_PER_PAGE) as unknown[]);
      }
    };
  }
}
