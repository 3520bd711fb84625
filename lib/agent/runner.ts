import type { Logger } from '../log/index.js';
import type { LeasedJob, ResultItem } from '../protocol/schemas.js';
import type { Clock } from '../util/clock.js';
import { toWireError } from '../util/errors.js';
import type { Dispatch } from './dispatch.js';
import type { OutputApi, OutputPipeOptions } from './output-pipe.js';
import { JobContext, type JobContextShared } from './job-context.js';
import type { LeaseKeeper } from './leases.js';
import type { ResultReporter } from './reporter.js';
import type { AgentMetrics } from './metrics.js';
import { auditFields, isWriteType, type AuditOutcome } from './audit.js';

export type { OutputApi } from './output-pipe.js';

/**
 * Runs one leased job: holds its lease (lease.ts), builds its
 * OperationContext (job-context.ts: the lease's signal, a child logger,
 * output pages pipelined by output-pipe.ts), dispatches it, waits until every page is
 * stored, and hands the outcome to the reporter. Never throws:
 * every failure becomes a failed result, or nothing when the lease is gone or
 * the drain released the job. A job whose fence passed before its queue slot
 * opened is not started at all.
 */
export class JobRunner {
  /** Histogram children by type and outcome: prom-client hashes a label object on every observe. */
  private readonly durations = new Map<string, { observe(seconds: number): void }>();
  /** What every job's context shares (job-context.ts). */
  private readonly shared: JobContextShared;

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
    opts: OutputPipeOptions = {},
  ) {
    // The page form the proxy takes (NDJSON until a proxy of an earlier release refuses it) is shared by every job.
    this.shared = { api: deps.api, clock: deps.clock, log: deps.log, form: { ndjson: true }, ...(deps.metrics ? { metrics: deps.metrics } : {}), pipe: opts };
  }

  /** Runs `job`, whose TTL counts from `leasedAtMs` on the monotonic clock (lease.ts leaseOriginMs). */
  async run(job: LeasedJob, leasedAtMs: number): Promise<void> {
    const { clock, metrics } = this.deps;
    const lease = this.deps.keeper.add(job, leasedAtMs);
    const ctx = new JobContext(this.shared, job, lease);
    if (!lease.start()) {
      // Past its fence already (a frozen or overloaded process): the proxy may have given it to
      // another agent. Not started, nothing reported: the lease expires there and the job runs again.
      ctx.log.warn('job not started: its lease ran out before it could start', { stopReason: lease.stopReason });
      return;
    }
    const startedAtMs = clock.monotonicMs();
    // winston formats (and redacts) a line before its level is checked: skip the work when debug is off.
    const debug = this.deps.log.enabled('debug');
    let outcome = 'stopped';
    if (debug) ctx.log.debug('job started');
    let item: ResultItem | undefined;
    // Writes get one `audit` line at info, however they end (audit.ts says which fields).
    const audit = isWriteType(job.type)
      ? (end: Omit<AuditOutcome, 'durationMs'>) => this.deps.log.info('audit', auditFields(job, { ...end, durationMs: clock.monotonicMs() - startedAtMs }))
      : undefined;
    try {
      const result = await this.deps.dispatch(job, ctx).finally(() => ctx.settle());
      // Every page is stored before the result goes out: a reader of a succeeded job sees all of them.
      await ctx.flush();
      // A result that arrives after the job was stopped is worthless (lost, fenced, released) or a timeout.
      if (lease.stopReason) throw lease.signal.reason;
      item = { jobId: job.id, leaseToken: job.leaseToken, outcome: 'succeeded', result: result === undefined ? null : result };
      outcome = 'succeeded';
      audit?.({ outcome: 'succeeded', result });
      if (debug) ctx.log.debug('job succeeded');
    } catch (err) {
      const stopped = lease.stopReason;
      if (stopped && stopped !== 'timeout') {
        // lost/cancelled/fenced: the lease is no longer ours; shutdown: the drain released it.
        ctx.log.info('job stopped', { stopReason: stopped });
        audit?.({ outcome: 'stopped', stopReason: stopped });
        return;
      }
      const error = toWireError(stopped ? lease.signal.reason : err);
      outcome = 'failed';
      item = { jobId: job.id, leaseToken: job.leaseToken, outcome: 'failed', error: { ...error, message: error.message.slice(0, 4000) } };
      ctx.log.warn('job failed', { code: error.code, error: error.message, retryable: error.retryable });
      audit?.({ outcome: 'failed', code: error.code });
    } finally {
      // The in-flight gauge is read from the loop when scraped (metrics.ts): nothing per job but the duration.
      if (metrics) this.duration(metrics, job.type, outcome).observe((clock.monotonicMs() - startedAtMs) / 1000);
    }
    this.deps.reporter.submit(lease, item);
  }

  private duration(metrics: AgentMetrics, type: string, outcome: string): { observe(seconds: number): void } {
    const key = `${type}\u0000${outcome}`;
    let child = this.durations.get(key);
    if (!child) {
      child = metrics.jobDuration.labels({ type, outcome });
      this.durations.set(key, child);
    }
    return child;
  }
}
