import type { FastifyInstance, FastifyRequest } from 'fastify';
import sjson from 'secure-json-parse';
import { OutpostError } from '../../util/errors.js';

/**
 * Deepest nesting of arrays and objects accepted in a request body. The
 * protocol's own bodies nest 4 levels, job payloads and results a few more;
 * a body nested thousands of levels deep parses fine but overflows the stack
 * of whatever walks it later (validation, storage, redaction).
 */
export const MAX_JSON_DEPTH = 64;

/** What one pass over a JSON text found: too deep, a string that may be a `__proto__`/`constructor` key, or neither. */
export type JsonScan = 'too_deep' | 'suspect_key' | 'ok';

/**
 * One linear pass over `text`: whether arrays/objects nest deeper than
 * `maxDepth` (a `[` inside a string does not count), and whether a string
 * could spell `__proto__` or `constructor` (plainly, or with `\u` escapes, the
 * only escapes JSON has for letters). String contents are skipped with
 * indexOf; each backslash run is counted once. Malformed text is not judged
 * here: the parser refuses it next.
 */
export function scanJson(text: string, maxDepth: number): JsonScan {
  let depth = 0;
  let suspect = false;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      // The closing quote is the first one not preceded by an odd run of backslashes.
      let j = i;
      for (;;) {
        j = text.indexOf('"', j + 1);
        if (j < 0) return suspect ? 'suspect_key' : 'ok';
        let k = j - 1;
        while (text.charCodeAt(k) === 0x5c /* \ */) k--;
        if ((j - 1 - k) % 2 === 0) break;
      }
      if (!suspect) suspect = maybeProtoKey(text, i + 1, j);
      i = j;
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > maxDepth) return 'too_deep';
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      depth--;
    }
  }
  return suspect ? 'suspect_key' : 'ok';
}

/** Whether text[start, end) may decode to `__proto__` or `constructor` (at most 11 letters, 6 characters each). */
function maybeProtoKey(text: string, start: number, end: number): boolean {
  const length = end - start;
  if (length === 9) return text.startsWith('__proto__', start);
  if (length === 11) return text.startsWith('constructor', start);
  if (length < 9 || length > 66) return false;
  for (let i = start; i < end; i++) if (text.charCodeAt(i) === 0x5c) return true;
  return false;
}

/** Whether `text` nests arrays/objects deeper than `maxDepth` (see {@link scanJson}). */
export function jsonDepthExceeds(text: string, maxDepth: number): boolean {
  return scanJson(text, maxDepth) === 'too_deep';
}

/**
 * Parses a JSON request body: nesting bounded first, in the same linear pass
 * that looks for prototype keys; only a body that may hold one goes through
 * secure-json-parse, which refuses `__proto__` and `constructor.prototype`
 * as fastify's own parser does (the others skip its two extra regex passes).
 * Messages never quote the body (it may hold a token).
 */
export function parseJsonBody(text: string): unknown {
  const scan = scanJson(text, MAX_JSON_DEPTH);
  if (scan === 'too_deep') {
    throw new OutpostError('invalid_request', `body: nested deeper than ${MAX_JSON_DEPTH} levels`);
  }
  try {
    return scan === 'suspect_key' ? sjson.parse(text, null, { protoAction: 'error', constructorAction: 'error' }) : JSON.parse(text);
  } catch (err) {
    if (err instanceof SyntaxError && /prototype/i.test(err.message)) {
      throw new OutpostError('invalid_request', 'body: keys __proto__ and constructor.prototype are not allowed');
    }
    throw new OutpostError('invalid_request', 'body: malformed JSON');
  }
}

/**
 * JSON bodies parsed by hand so that a parse error never quotes the body and
 * an empty body on a body-less POST (cancel) is fine. JSON is the only body
 * type: fastify's default `text/plain` parser is removed, so any other
 * content-type is a 400 before the body is read.
 */
export function installJsonParser(app: FastifyInstance): void {
  app.removeContentTypeParser('application/json');
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') {
      done(null, undefined);
      return;
    }
    try {
      done(null, parseJsonBody(text));
    } catch (err) {
      done(err as OutpostError, undefined);
    }
  });
}

/**
 * Every query parameter of the protocol is a single value: `?pool=A&pool=B`
 * (an array once parsed) is a 400 naming the parameter, before a route can
 * hand the array to the store. Only on the API (`/v1/`): probes and pages
 * ignore their query string. The error for a request's query, if any.
 */
export function repeatedQueryError(req: FastifyRequest): OutpostError | undefined {
  if (!req.routeOptions.url?.startsWith('/v1/')) return undefined;
  const query = req.query as Record<string, unknown> | undefined;
  if (!query || typeof query !== 'object') return undefined;
  const name = Object.keys(query).find((n) => Array.isArray(query[n]));
  return name === undefined ? undefined : new OutpostError('invalid_request', `querystring.${name.slice(0, 64)}: must be given once`);
}
