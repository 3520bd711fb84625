import type { Client, Control, Entry, Filter, SearchOptions } from 'ldapts';
import { OutpostError } from '../../util/errors.js';
import { throwIfAborted } from '../../util/abort.js';
import type { LdapSettings } from './config.js';
import { DnSyntaxError, formatDN, isUnderDN, parseDN } from './dn.js';
import type { LdapPool } from './pool.js';

/** What a paged search needs. */
export interface PagedSearch {
  base: string;
  filter: Filter;
  scope?: 'base' | 'one' | 'sub';
  attributes: string[];
  explicitBufferAttributes?: string[];
  pageSize: number;
  sizeLimit?: number;
  /** Request controls besides paged results (e.g. AD's Show Deleted). */
  controls?: Control[];
}

/**
 * Runs a paged search (simple paged results control) and hands each page to
 * `onPage` as soon as it arrives; the next page is asked for only after
 * `onPage` resolved, so memory stays at one page. The signal is checked
 * between pages; aborting destroys the connection (see LdapPool.use).
 * `onPage` also gets the client, for follow-up reads such as ranged values.
 * Errors thrown by `onPage` (e.g. writePage) come out unchanged.
 */
export async function pagedSearch(
  pool: LdapPool,
  signal: AbortSignal,
  q: PagedSearch,
  onPage: (entries: Entry[], client: Client) => Promise<void | 'stop'>,
): Promise<void> {
  let sinkError: { err: unknown } | undefined;
  const opts: SearchOptions = {
    scope: q.scope ?? 'sub',
    filter: q.filter,
    attributes: q.attributes,
    explicitBufferAttributes: q.explicitBufferAttributes ?? [],
    // An alias under the base could point outside it: never follow one.
    derefAliases: 'never',
    paged: { pageSize: q.pageSize },
    ...(q.sizeLimit ? { sizeLimit: q.sizeLimit } : {}),
  };
  let pages = 0;
  try {
    await pool.use(
      signal,
      'search',
      async (client) => {
        for await (const page of client.searchPaginated(q.base, opts, q.controls)) {
          throwIfAborted(signal);
          let verdict: void | 'stop';
          pages++;
          try {
            verdict = await onPage(page.searchEntries, client);
          } catch (err) {
            sinkError = { err };
            throw err;
          }
          throwIfAborted(signal);
          if (verdict === 'stop') break;
        }
      },
      // Starting over after a page went out would write it twice.
      () => pages === 0,
    );
  } catch (err) {
    if (sinkError && !signal.aborted) throw sinkError.err;
    throw err;
  }
}

/** Reads one entry by DN (scope base); null when it does not exist or does not match `filter`. */
export async function readEntry(
  pool: LdapPool,
  signal: AbortSignal,
  dn: string,
  attributes: string[],
  explicitBufferAttributes: string[] = [],
  filter?: Filter,
): Promise<Entry | null> {
  try {
    return await pool.use(signal, 'search', async (client) => {
      const res = await client.search(dn, { scope: 'base', attributes, explicitBufferAttributes, derefAliases: 'never', ...(filter ? { filter } : {}) });
      return res.searchEntries[0] ?? null;
    });
  } catch (err) {
    if (err instanceof OutpostError && err.code === 'not_found') return null;
    throw err;
  }
}

/**
 * Parses a DN from a payload and checks that it lies under `baseDN`.
 * Returns it re-serialised with canonical escaping. Anything else is a
 * non-retryable `invalid_request` that does not echo the value.
 */
export function payloadDN(s: Pick<LdapSettings, 'base' | 'name'>, value: string, field: string): string {
  let rdns;
  try {
    rdns = parseDN(value);
  } catch (err) {
    const why = err instanceof DnSyntaxError ? err.message : 'a syntax error';
    throw new OutpostError('invalid_request', `ldap ${s.name}: ${field} is not a valid DN (${why})`);
  }
  if (rdns.length === 0 || !isUnderDN(rdns, s.base)) {
    throw new OutpostError('invalid_request', `ldap ${s.name}: ${field} lies outside the configured baseDN`);
  }
  return formatDN(rdns);
}

/** Pages of `size` records, flushed through `write` when full and at the end. */
export class PageBuffer<T> {
  private buf: T[] = [];
  count = 0;

  constructor(
    private readonly size: number,
    private readonly write: (records: readonly T[]) => Promise<void>,
    /** Checked before each write: one LDAP page of groups can fill many output pages. */
    private readonly signal: AbortSignal,
  ) {}

  async push(record: T): Promise<void> {
    this.buf.push(record);
    this.count++;
    if (this.buf.length >= this.size) await this.flush();
  }

  async flush(): Promise<void> {
    if (!this.buf.length) return;
    throwIfAborted(this.signal);
    const page = this.buf;
    this.buf = [];
    await this.write(page);
  }
}
