import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import type { Logger } from '../log/index.js';
import { NDJSON_MEDIA_TYPE, type OutputRequest, type OutputResponse } from '../protocol/schemas.js';
import { Backoff } from '../util/backoff.js';
import type { Clock } from '../util/clock.js';
import { coerceError, OutpostError } from '../util/errors.js';
import { retry } from '../util/retry.js';
import { EncodedBody } from './api.js';
import type { Lease } from './lease.js';
import type { AgentMetrics } from './metrics.js';
import { EMPTY_PAGE, PageBuilder, PagePool, splitPage, withHead, type Page } from './pages.js';

const gzip = promisify(gzipCb);

/** The part of the protocol client the output pipe uses. */
export interface OutputApi {
  /** The JSON page form (every proxy). */
  output(jobId: string, body: OutputRequest, signal?: AbortSignal): Promise<OutputResponse>;
  /** The NDJSON page form (proxies of this release on); absent: JSON only. */
  outputNdjson?(jobId: string, page: EncodedBody, signal?: AbortSignal): Promise<OutputResponse>;
}

/** Options of the output pipe. */
export interface OutputPipeOptions {
  /** Pages sent and not yet stored; `write` waits (backpressure) while this many are out. Default 3. */
  maxPagesInFlight?: number;
  /** A page is cut once its NDJSON text reaches this many characters. Default 1 MiB (the proxy's body limit defaults to 4 MiB). */
  maxPageBytes?: number;
  /**
   * gzip each page (`Content-Encoding: gzip`). Default false: on a LAN the
   * compression costs more CPU than the bytes it saves (bench/sql.ts, notes);
   * worth it on a slow WAN link (listing text shrinks ~10×).
   */
  gzip?: boolean;
}

/** Most records in one page: the protocol's limit. */
const MAX_RECORDS_PER_PAGE = 10_000;
/**
 * Seqs go 0, 16, 32…: a page the proxy finds too large (413) is split in
 * halves that take seq and seq + span/2 (four halvings), while the pages
 * after it are already out with their own seqs. The proxy reads pages in seq
 * order and needs no contiguity.
 */
export const SEQ_STRIDE = 16;

/** Which page form the proxy takes, shared by a runner's jobs: a proxy of an earlier release refuses NDJSON once, then gets JSON. */
export interface PageForm {
  ndjson: boolean;
}

/** What an old proxy (no NDJSON parser) answers to an NDJSON page. */
function isNdjsonRefused(e: OutpostError): boolean {
  return e.code === 'invalid_request' && e.message.includes('content-type must be application/json');
}

/**
 * A job's output pages, pipelined: `write` encodes records as NDJSON lines
 * (never rewritten by value), cuts pages by size, and sends each one without
 * waiting for the previous answer, up to `maxPagesInFlight` pages out; then
 * it waits for the oldest to be stored. So the connector reads page n+1 while
 * page n travels, and memory stays at a few pages whatever the listing's size.
 * A failure (a page refused, the lease lost) surfaces on the next `write` and
 * on `flush`, which the runner awaits before it reports the job. No page
 * goes out once the job was stopped or its fence has passed.
 */
export class OutputPipe {
  /** Pages and bytes (characters) out now, and the most seen at once: the memory the pipe holds. */
  readonly stats = { pagesInFlight: 0, bytesInFlight: 0, peakPagesInFlight: 0, peakBytesInFlight: 0, pagesSent: 0 };
  private readonly out = new Set<Promise<void>>();
  private failure: Error | undefined;
  private nextSeq = 0;
  private maxPageBytes: number;
  private readonly maxPages: number;
  private readonly backoff = new Backoff();
  /** One buffer per page out, and one for the page being filled. */
  private readonly pool: PagePool;

  constructor(
    private readonly deps: { api: OutputApi; clock: Clock; lease: Lease; log: () => Logger; form: PageForm; metrics?: AgentMetrics },
    private readonly opts: OutputPipeOptions = {},
  ) {
    this.maxPageBytes = opts.maxPageBytes ?? 1024 * 1024;
    this.maxPages = Math.max(1, opts.maxPagesInFlight ?? 3);
    this.pool = new PagePool(this.maxPages + 1, 2 * this.maxPageBytes);
  }

  /** Queues `records` as one or more pages; resolves once they are out (not yet stored), waiting while the pipe is full. */
  async write(records: readonly unknown[]): Promise<void> {
    this.throwIfFailed();
    // An empty write still makes a (empty) page, as it always did.
    if (!records.length) return this.queue(EMPTY_PAGE);
    let page = new PageBuilder(this.pool, this.maxPageBytes);
    for (const r of records) {
      // As JSON.stringify of the array would: undefined becomes null. Its declared type says string, but
      // undefined (or a function) gives undefined, hence the widening.
      const line = (JSON.stringify(r) as string | undefined) ?? 'null';
      page.append(line);
      if (page.bytes >= this.maxPageBytes || page.count >= MAX_RECORDS_PER_PAGE) {
        await this.queue(page.done());
        page = new PageBuilder(this.pool, this.maxPageBytes);
      }
    }
    if (page.count) await this.queue(page.done());
  }

  /** Waits until every page sent is stored; rejects with the first failure. */
  async flush(): Promise<void> {
    await this.settle();
    this.throwIfFailed();
  }

  /** Waits until no page is out, whatever became of them. */
  async settle(): Promise<void> {
    while (this.out.size) await Promise.allSettled([...this.out]);
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  private async queue(page: Page): Promise<void> {
    while (this.out.size >= this.maxPages) await Promise.race(this.out);
    this.throwIfFailed();
    this.deps.lease.assertLive();
    const seq = this.nextSeq;
    this.nextSeq += SEQ_STRIDE;
    const { stats } = this;
    stats.pagesInFlight++;
    stats.bytesInFlight += page.data.length;
    stats.peakPagesInFlight = Math.max(stats.peakPagesInFlight, stats.pagesInFlight);
    stats.peakBytesInFlight = Math.max(stats.peakBytesInFlight, stats.bytesInFlight);
    const sent: Promise<void> = this.send(page, seq, SEQ_STRIDE).then(
      () => {
        stats.pagesSent++;
      },
      (err: unknown) => {
        // send() rejects with Errors; anything else is wrapped so that what write() throws is one.
        this.failure ??= err instanceof Error ? err : coerceError(err);
      },
    );
    const done = sent.finally(() => {
      stats.pagesInFlight--;
      stats.bytesInFlight -= page.data.length;
      this.out.delete(done);
      // Answered, failed or abandoned (its request ended): no request holds its bytes any more.
      this.pool.give(page.owner);
    });
    this.out.add(done);
  }

  /** One page at `seq`, retried on transient failures; a 413 splits it in halves within `span` seqs. */
  private async send(page: Page, seq: number, span: number): Promise<void> {
    const { lease } = this.deps;
    try {
      await retry(
        async () => {
          lease.assertLive();
          await this.post(page, seq);
        },
        {
          clock: this.deps.clock,
          backoff: this.backoff,
          signal: lease.signal,
          // Lost, stopped and splittable pages are handled below, not retried; 401 may be a token being rotated.
          shouldRetry: (e) => !lease.stopReason && e.code !== 'lease_lost' && !(e.code === 'too_large' && page.count > 1) && (e.retryable || e.code === 'unauthorized'),
          onRetry: (e, delayMs) => {
            this.deps.metrics?.backoffs.inc({ call: 'output' });
            this.deps.log().warn('writing an output page failed; retrying', { seq, code: e.code, error: e.message, retryInMs: delayMs });
          },
        },
      );
    } catch (err) {
      // Stopped, or no longer held (assertLive's own error): nothing more goes out.
      if (lease.stopReason || !lease.held) throw lease.signal.reason ?? err;
      const e = coerceError(err);
      if (e.code === 'lease_lost') {
        lease.stop('lost');
        throw lease.signal.reason;
      }
      if (e.code === 'too_large' && page.count > 1 && span > 1) {
        // The proxy takes less than we cut: later pages are cut smaller too.
        this.maxPageBytes = Math.max(1, Math.min(this.maxPageBytes, Math.floor(page.data.length / 2)));
        const [head, tail] = splitPage(page);
        await this.send(head, seq, span / 2);
        await this.send(tail, seq + span / 2, span / 2);
        return;
      }
      throw e;
    }
  }

  private async post(page: Page, seq: number): Promise<void> {
    const { api, lease, form } = this.deps;
    const { job } = lease;
    if (form.ndjson && api.outputNdjson) {
      const headers: Record<string, string> = { 'content-type': NDJSON_MEDIA_TYPE };
      let data = withHead(page, `${JSON.stringify({ leaseToken: job.leaseToken, seq })}\n`);
      if (this.opts.gzip) {
        data = await gzip(data, { level: 1 });
        headers['content-encoding'] = 'gzip';
      }
      try {
        await api.outputNdjson(job.id, new EncodedBody(data, headers), lease.signal);
        return;
      } catch (err) {
        const e = coerceError(err);
        if (!isNdjsonRefused(e)) throw e;
        // A proxy of an earlier release: the JSON form from now on, for every job of this runner.
        form.ndjson = false;
        this.deps.log().info('the integration-proxy does not take NDJSON output pages; sending JSON pages');
      }
    }
    // Lines were made by JSON.stringify here (no raw newline inside one): parsing them back gives the same values.
    const records = page.count ? page.data.toString('utf8').slice(0, -1).split('\n').map((l) => JSON.parse(l) as unknown) : [];
    await api.output(job.id, { leaseToken: job.leaseToken, seq, records }, lease.signal);
  }
}
