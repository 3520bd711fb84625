import { OutpostError } from '../../util/errors.js';

/**
 * Opaque page cursors of `GET /v1/jobs` and `GET /v1/agents`: the sort key of
 * the last row of a page, base64url JSON. A client must not build or read
 * them; the proxy checks every decoded value before it reaches SQL.
 */
export type CursorKey = Array<string | number>;

/** Longest cursor accepted (the keys are an id and a pool or a time). */
const MAX_CURSOR_CHARS = 1024;

export function encodeCursor(key: CursorKey): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
}

/**
 * The key of a cursor whose values have the given types, in order; 400
 * `invalid_request` naming `querystring.cursor` otherwise.
 */
export function decodeCursor(text: string, types: ReadonlyArray<'string' | 'number'>): CursorKey {
  const bad = () => new OutpostError('invalid_request', 'querystring.cursor: not a cursor of this listing');
  if (text.length > MAX_CURSOR_CHARS || !/^[A-Za-z0-9_-]+$/.test(text)) throw bad();
  let key: unknown;
  try {
    key = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    throw bad();
  }
  if (!Array.isArray(key) || key.length !== types.length) throw bad();
  key.forEach((v, i) => {
    if (types[i] === 'number' ? !Number.isSafeInteger(v) : typeof v !== 'string' || v.length > 256) throw bad();
  });
  return key as CursorKey;
}
