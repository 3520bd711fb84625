import { OutpostError } from '../../util/errors.js';
import { MAX_JSON_DEPTH, parseJsonBody } from './json-body.js';

/** Most records in one output page, either form (OutputRequest's maxItems). */
export const MAX_PAGE_RECORDS = 10_000;

/** An output page in its NDJSON form, as the content-type parser hands it to the route. */
export interface NdjsonPage {
  /** The first line, parsed (validated by the route's schema as OutputPageHead). */
  head: unknown;
  /** The record lines, each ending in `\n` ('' for an empty page): stored and served as they are. */
  ndjson: string;
  /** How many record lines. */
  count: number;
}

const bad = (why: string): OutpostError => new OutpostError('invalid_request', `body: ${why}`);

/**
 * Splits an NDJSON page: `{leaseToken, seq}` on the first line, then one
 * record a line. The records are framed, never parsed into objects: each line
 * must hold one JSON value whose strings close and whose brackets balance
 * within the line (so two records glued together, a cut-off record or a raw
 * newline inside a string are refused), nested at most MAX_JSON_DEPTH deep.
 * It is a framing check, not a grammar check: a reader still parses each line.
 * Messages never quote the body.
 */
export function parseNdjsonPage(text: string): NdjsonPage {
  const headEnd = text.indexOf('\n');
  const headText = headEnd < 0 ? text : text.slice(0, headEnd);
  if (headText.trim() === '') throw bad('the first line must be {"leaseToken", "seq"}');
  const head = parseJsonBody(headText);
  let ndjson = headEnd < 0 ? '' : text.slice(headEnd + 1);
  const count = countRecordLines(ndjson, MAX_JSON_DEPTH);
  if (count > MAX_PAGE_RECORDS) throw bad(`more than ${MAX_PAGE_RECORDS} records in one page`);
  if (ndjson.length && ndjson.charCodeAt(ndjson.length - 1) !== 0x0a) ndjson += '\n';
  return { head, ndjson, count };
}

/** The number of record lines of `text` (a final newline ends the last line; it opens no new one). */
export function countRecordLines(text: string, maxDepth: number): number {
  let count = 0;
  for (let start = 0; start < text.length; ) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    // \r\n is accepted as a line end: the \r is whitespace after the value.
    checkLine(text, start, end, maxDepth, count + 1);
    count++;
    start = end + 1;
  }
  return count;
}

const isSpace = (c: number) => c === 0x20 || c === 0x09 || c === 0x0d;
/** `{ [ " - 0-9 t f n`: what a JSON value can start with. */
const startsValue = (c: number) => c === 0x7b || c === 0x5b || c === 0x22 || c === 0x2d || (c >= 0x30 && c <= 0x39) || c === 0x74 || c === 0x66 || c === 0x6e;

function checkLine(text: string, start: number, end: number, maxDepth: number, line: number): void {
  let k = start;
  while (k < end && isSpace(text.charCodeAt(k))) k++;
  if (k === end) throw bad(`record line ${line} is empty`);
  if (!startsValue(text.charCodeAt(k))) throw bad(`record line ${line} does not start a JSON value`);
  let depth = 0;
  let closed = false;
  for (; k < end; k++) {
    const c = text.charCodeAt(k);
    if (closed) {
      if (!isSpace(c)) throw bad(`record line ${line} holds more than one JSON value`);
      continue;
    }
    if (c === 0x22 /* " */) {
      // The closing quote is the first one not preceded by an odd run of backslashes, on this line.
      let j = k;
      for (;;) {
        j = text.indexOf('"', j + 1);
        if (j < 0 || j >= end) throw bad(`record line ${line} has a string that does not close on its line`);
        let b = j - 1;
        while (text.charCodeAt(b) === 0x5c /* \ */) b--;
        if ((j - 1 - b) % 2 === 0) break;
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

/** Records as NDJSON text (the old JSON page form, converted once on arrival). */
export function toNdjson(records: readonly unknown[]): string {
  let out = '';
  for (const r of records) out += JSON.stringify(r) + '\n';
  return out;
}
