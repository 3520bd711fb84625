import { OutpostError } from '../../util/errors.js';
import type { Db, Stmt } from './db.js';
import { atomic, run, stmt } from './db.js';
import type { QuotaName } from './jobs.js';

/** What became of an output page. */
export type PageStatus = 'accepted' | 'duplicate' | 'lost' | 'not_found';

/** Output quotas; unlimited when absent. */
export interface OutputStoreOptions {
  /** Bytes of stored pages per job (the current lease's). Default (config) 1 GiB. */
  maxBytesPerJob?: number;
  /** Bytes of stored pages per pool, all kept jobs together. Default (config) 8 GiB. */
  maxBytesPerPool?: number;
}

export interface OutputStoreDeps {
  db: Db;
  /** Told of each refusal (metrics). */
  onQuota?: (quota: QuotaName) => void;
}

/** Rolls the append's transaction back when a quota refuses the page. */
const REFUSED = new Error('output quota');

/** Pages read per query when streaming a job's output (each up to the body limit, 4 MiB by default). */
const PAGES_PER_READ = 8;

/**
 * Output pages of listings, keyed by (job, lease token, seq): a repeated seq
 * is a no-op and pages of an earlier lease are never mixed with the current
 * one (the claim deletes them).
 */
export class OutputStore {
  constructor(
    private readonly deps: OutputStoreDeps,
    private readonly opts: OutputStoreOptions = {},
  ) {}

  /**
   * Appends one page of records (the old JSON page form; see appendNdjson).
   */
  append(pool: string, jobId: string, leaseToken: string, seq: number, records: readonly unknown[]): Promise<PageStatus> {
    let ndjson = '';
    for (const r of records) ndjson += JSON.stringify(r) + '\n';
    return this.appendNdjson(pool, jobId, leaseToken, seq, { ndjson: Buffer.from(ndjson), count: records.length });
  }

  /**
   * Appends one page if `leaseToken` holds the job of `pool`: its record
   * lines are stored as they came (NDJSON, each line ending in `\n`), never
   * parsed; `count` lines and their bytes count against the job's and the
   * pool's quotas. One transaction: a page over a quota is rolled back (413
   * `too_large`), so nothing beyond the quota is stored. SQLite keeps the
   * bytes as they came (a BLOB: no JS string is made of them); PostgreSQL's
   * column is TEXT, so it gets the text.
   */
  async appendNdjson(pool: string, jobId: string, leaseToken: string, seq: number, page: { ndjson: Buffer; count: number }): Promise<PageStatus> {
    const text = this.deps.db.dialect === 'sqlite' ? page.ndjson : page.ndjson.toString('utf8');
    const count = page.count;
    const bytes = page.ndjson.length;
    const perJob = this.opts.maxBytesPerJob ?? Number.MAX_SAFE_INTEGER;
    const perPool = this.opts.maxBytesPerPool ?? Number.MAX_SAFE_INTEGER;
    let refused: QuotaName | null = null;
    const status = await atomic(this.deps.db, function* (): Generator<Stmt, PageStatus | 'refused', unknown[]> {
      const inserted = yield stmt(
        `INSERT INTO outpost_output (job_id, lease_token, seq, records, count, bytes)
         SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS
           (SELECT 1 FROM outpost_jobs WHERE id = ? AND pool = ? AND lease_token = ? AND status = 'leased')
         ON CONFLICT (job_id, lease_token, seq) DO NOTHING RETURNING seq`,
        [jobId, leaseToken, seq, text, count, bytes, jobId, pool, leaseToken],
      );
      if (inserted.length) {
        const job = yield stmt(
          'UPDATE outpost_jobs SET output_records = output_records + ?, output_bytes = output_bytes + ? WHERE id = ? AND output_bytes + ? <= ? RETURNING id',
          [count, bytes, jobId, bytes, perJob],
        );
        if (!job.length) refused = 'output_bytes_per_job';
        else if (bytes > perPool) refused = 'output_bytes_per_pool';
        else {
          const usage = yield stmt(
            `INSERT INTO outpost_pool_usage (pool, output_bytes) VALUES (?, ?)
             ON CONFLICT (pool) DO UPDATE SET output_bytes = outpost_pool_usage.output_bytes + excluded.output_bytes
               WHERE outpost_pool_usage.output_bytes + excluded.output_bytes <= ? RETURNING pool`,
            [pool, bytes, perPool],
          );
          if (!usage.length) refused = 'output_bytes_per_pool';
        }
        // Thrown to roll the page back; answered below.
        if (refused) throw REFUSED;
        return 'accepted';
      }
      const job = yield stmt('SELECT id FROM outpost_jobs WHERE id = ? AND pool = ?', [jobId, pool]);
      if (!job.length) return 'not_found';
      const page = yield stmt('SELECT seq FROM outpost_output WHERE job_id = ? AND lease_token = ? AND seq = ?', [jobId, leaseToken, seq]);
      return page.length ? 'duplicate' : 'lost';
    }).catch((err: unknown) => {
      if (err === REFUSED) return 'refused' as const;
      throw err;
    });
    if (status !== 'refused') return status;
    const which = refused as QuotaName | null;
    this.deps.onQuota?.(which ?? 'output_bytes_per_job');
    throw which === 'output_bytes_per_pool'
      ? new OutpostError('too_large', `pool ${pool}: stored output would exceed ${perPool} bytes (quotas.outputBytesPerPool); finished jobs free it when deleted (retention)`)
      : new OutpostError('too_large', `job ${jobId}: output would exceed ${perJob} bytes (quotas.outputBytesPerJob)`);
  }

  /**
   * The NDJSON of one lease's pages in seq order, a page a chunk (bytes from
   * SQLite, text from PostgreSQL) and a few pages per query, so that a listing
   * of any size streams with bounded memory. Pages stored as JSON arrays
   * (before NDJSON storage) are converted.
   */
  async *ndjson(jobId: string, leaseToken: string): AsyncGenerator<string | Buffer> {
    let after = -1;
    for (;;) {
      const rows = await run<{ seq: number | string; records: string | Buffer }>(
        this.deps.db,
        // A literal LIMIT: SQLite re-prepares a statement whose LIMIT is bound at every execution.
        `SELECT seq, records FROM outpost_output WHERE job_id = ? AND lease_token = ? AND seq > ? ORDER BY seq LIMIT ${PAGES_PER_READ}`,
        [jobId, leaseToken, after],
      );
      for (const r of rows) {
        const page = r.records;
        if (!page.length) continue;
        yield isLegacyPage(page) ? legacyToNdjson(page.toString()) : page;
      }
      const last = rows.at(-1);
      if (rows.length < PAGES_PER_READ || !last) return;
      after = Number(last.seq);
    }
  }

  /** The records of one lease's pages in seq order, a page at a time (parsed: for tests and tools; the API serves ndjson()). */
  async *records(jobId: string, leaseToken: string): AsyncGenerator<unknown[]> {
    for await (const page of this.ndjson(jobId, leaseToken)) {
      yield page
        .toString()
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => JSON.parse(line) as unknown);
    }
  }
}

/**
 * A page stored as a JSON array by a proxy before NDJSON storage: JSON.stringify
 * of an array ends in `]`, a stored NDJSON page always in a newline.
 */
function isLegacyPage(page: string | Buffer): boolean {
  return (typeof page === 'string' ? page.charCodeAt(page.length - 1) : page[page.length - 1]) !== 0x0a;
}

function legacyToNdjson(text: string): string {
  let out = '';
  for (const r of JSON.parse(text) as unknown[]) out += JSON.stringify(r) + '\n';
  return out;
}
