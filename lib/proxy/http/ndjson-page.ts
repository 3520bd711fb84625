import { OutpostError } from '../../util/errors.js';
import { MAX_JSON_DEPTH, parseJsonBody } from './json-body.js';

/** Most records in one output page, either form (OutputRequest's maxItems). */
export const MAX_PAGE_RECORDS = 10_000;

/** An output page in its NDJSON form, as the content-type parser hands it to the route. */
export interface NdjsonPage {
  /** The first line, parsed (validated by the route's schema as OutputPageHead). */
  head: unknown;
  /**
   * The record lines as received (UTF-8 bytes), each ending in `\n` (empty for an empty page):
   * stored and served as they are. Bytes, not a string: a page is up to the body limit (4 MiB), and a
   * string that size lives in V8's old generation until a full GC (a million-row listing grew the
   * proxy by ~50 MB that way).
   */
  ndjson: Buffer;
  /** How many record lines. */
  count: number;
}

const bad = (why: string): OutpostError => new OutpostError('invalid_request', `body: ${why}`);
const NL = 0x0a;

/**
 * Splits an NDJSON page: `{leaseToken, seq}` on the first line, then one
 * record a line. The records are framed, never parsed into objects: each line
 * must hold one JSON value whose strings close and whose brackets balance
 * within the line (so two records glued together, a cut-off record or a raw
 * newline inside a string are refused), nested at most MAX_JSON_DEPTH deep.
 * It works on the bytes: every byte of a multi-byte UTF-8 character is ≥ 0x80,
 * so none is taken for JSON's ASCII punctuation. It is a framing check, not a
 * grammar check: a reader still parses each line. Messages never quote the body.
 */
export function parseNdjsonPage(body: Buffer): NdjsonPage {
  const headEnd = body.indexOf(NL);
  const headText = body.toString('utf8', 0, headEnd < 0 ? body.length : headEnd);
  if (headText.trim() === '') throw bad('the first line must be {"leaseToken", "seq"}');
  const head = parseJsonBody(headText);
  let ndjson = headEnd < 0 ? Buffer.alloc(0) : body.subarray(headEnd + 1);
  const count = countRecordLines(ndjson, MAX_JSON_DEPTH);
  if (count > MAX_PAGE_RECORDS) throw bad(`more than ${MAX_PAGE_RECORDS} records in one page`);
  if (ndjson.length && ndjson[ndjson.length - 1] !== NL) ndjson = Buffer.concat([ndjson, Buffer.from('\n')]);
  return { head, ndjson, count };
}

/** The number of record lines of `data` (a final newline ends the last line; it opens no new one). */
export function countRecordLines(data: Buffer | string, maxDepth: number): number {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  let count = 0;
  for (let start = 0; start < bytes.length; ) {
    let end = bytes.indexOf(NL, start);
    if (end < 0) end = bytes.length;
    // \r\n is accepted as a line end: the \r is whitespace after the value.
    checkLine(bytes, start, end, maxDepth, count + 1);
    count++;
    start = end + 1;
  }
  return count;
}

const isSpace = (c: number | undefined) => c === 0x20 || c === 0x09 || c === 0x0d;
/** `{ [ " - 0-9 t f n`: what a JSON value can start with. */
const startsValue = (c: number) => c === 0x7b || c === 0x5b || c === 0x22 || c === 0x2d || (c >= 0x30 && c <= 0x39) || c === 0x74 || c === 0x66 || c === 0x6e;

function checkLine(b: Buffer, start: number, end: number, maxDepth: number, line: number): void {
  let k = start;
  while (k < end && isSpace(b[k])) k++;
  if (k === end) throw bad(`record line ${line} is empty`);
  if (!startsValue(b[k] ?? 0)) throw bad(`record line ${line} does not start a JSON value`);
  let depth = 0;
  let closed = false;
  for (; k < end; k++) {
    const c = b[k];
    if (closed) {
      if (!isSpace(c)) throw bad(`record line ${line} holds more than one JSON value`);
      continue;
    }
    if (c === 0x22 /* " */) {
      // The closing quote is the first one not preceded by an odd run of backslashes, on this line.
      let j = k;
      for (;;) {
        j = b.indexOf(0x22, j + 1);
        if (j < 0 || j >= end) throw bad(`record line ${line} has a string that does not close on its line`);
        let q = j - 1;
        while (b[q] === 0x5c /* \ */) q--;
        if ((j - 1 - q) % 2 === 0) break;
      }
      k = j;
      if (depth === 0) closed = true;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > maxDepth) throw bad(`record line ${line} is nested deeper than ${maxDepth} levels`);
    } else if (c === 0x7d || c === 0x5d) {
      if (--depth < 0) throw bad(`record line ${line} closes a bracket it did not open`);
      if (depth === 0) closed = true;
    }
  }
  if (depth !== 0) throw bad(`record line ${line} is cut off (unbalanced brackets)`);
}

/** Records as NDJSON bytes (the old JSON page form, converted once on arrival). */
export function toNdjson(records: readonly unknown[]): Buffer {
  let out = '';
  for (const r of records) out += JSON.stringify(r) + '\n';
  return Buffer.from(out);
}
