import type { OperationContext } from '../connectors/types.js';
import type { Logger } from '../log/index.js';
import type { LeasedJob, OutputRequest, OutputResponse, ResultItem } from '../protocol/schemas.js';
import { Backoff } from '../util/backoff.js';
import { sleep, type Clock } from '../util/clock.js';
import { OutpostError, toWireError } from '../util/errors.js';
import { redact } from '../util/redact.js';
import type { Dispatch } from './dispatch.js';
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

  async run(job: LeasedJob, receivedAtMs: number): Promise<void> {
    const lease = this.deps.keeper.add(job, receivedAtMs);
    const { controller } = lease;
    const signal = controller.signal;
    const log = this.deps.log.child({ jobId: job.id, type: job.type, resource: job.resource, attempt: job.attempt });
    const timeout = this.deps.clock.setTimeout(() => {
      if (!signal.aborted) controller.abort(new OutpostError('timeout', `the job ran longer than its timeoutMs (${job.timeoutMs} ms)`, { retryable: true }));
    }, job.timeoutMs);
    const ctx: OperationContext = { signal, log, writePage: this.pageWriter(job, controller, log) };
    // winston formats (and redacts) a line before its level is checked: skip the work when debug is off.
    const debug = log.isDebugEnabled();
    const metrics = this.deps.metrics;
    const startedAtMs = this.deps.clock.now();
    metrics?.inFlight.inc();
    let outcome = 'stopped';
    if (debug) log.debug('job started');
    let item: ResultItem | undefined;
    try {
      const result = await this.deps.dispatch(job, ctx);
      // A result that arrives after the lease ended is worthless: another agent may run the job.
      if (signal.aborted) throw signal.reason;
      item = { jobId: job.id, leaseToken: job.leaseToken, outcome: 'succeeded', result: scrub(result) };
      outcome = 'succeeded';
      if (debug) log.debug('job succeeded');
    } catch (err) {
      const reason = signal.aborted ? (signal.reason as unknown) : err;
      const code = reason instanceof OutpostError ? reason.code : undefined;
      if (signal.aborted && code !== 'timeout') {
        // lost/cancelled/fenced: the keeper already let the lease go; shutdown: the drain releases it.
        log.info('job stopped', { code });
        return;
      }
      const error = toWireError(reason);
      outcome = 'failed';
      item = { jobId: job.id, leaseToken: job.leaseToken, outcome: 'failed', error: { ...error, message: error.message.slice(0, 4000) } };
      log.warn('job failed', { code: error.code, error: error.message, retryable: error.retryable });
    } finally {
      this.deps.clock.clearTimeout(timeout);
      metrics?.inFlight.dec();
      metrics?.jobDuration.observe({ type: job.type, outcome }, (this.deps.clock.now() - startedAtMs) / 1000);
    }
    if (item) this.deps.reporter.submit(item);
  }

  /**
   * `writePage`: sends pages with seq 0, 1, 2…; resolves once stored
   * (backpressure); retries transient failures with backoff; a page the proxy
   * finds too large (413) is split in two, each half with its own seq.
   */
  private pageWriter(job: LeasedJob, controller: AbortController, log: Logger): OperationContext['writePage'] {
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
          log.warn('writing an output page failed; retrying', { seq, code: e.code, error: e.message, retryInMs: delayMs });
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

/**
 * Keeps registered secrets and credential-looking pairs out of results and
 * output (a driver may echo a connection string). Cheap when nothing matches.
 */
export function scrub(value: unknown): unknown {
  if (value === undefined) return null;
  const text = JSON.stringify(value);
  if (text === undefined) return null;
  const clean = redact(text);
  if (clean === text) return value;
  try {
    return JSON.parse(clean);
  } catch {
    return '[REDACTED]';
  }
}
