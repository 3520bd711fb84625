import { createHash } from 'node:crypto';
import { OutpostError } from '../../util/errors.js';

/**
 * The delta cursor of the queries model: `sq1.` + base64url of
 * `{"r": resource, "h": statement fingerprint, "w": watermark}`. The
 * watermark is what `statements.accountsCursor` answered before the listing
 * ran (e.g. `select now()` or a change counter); the next
 * `listAccountsSince` gets it back as `:since`, a bound value only. Opaque
 * to the cloud, not secret and not signed: a forged one can only narrow or
 * widen a listing this resource's own statement makes.
 */
const PREFIX = 'sq1.';
const BODY = /^[A-Za-z0-9_-]{1,4000}$/;
/** Longest watermark kept (characters). */
export const MAX_WATERMARK = 1024;

export interface DeltaCursor {
  resource: string;
  fingerprint: string;
  watermark: string;
}

/** Ties a cursor to the statements that gave it meaning: changing either forces a full listing. */
export function statementFingerprint(...sql: Array<string | undefined>): string {
  return createHash('sha256').update(sql.map((s) => s ?? '').join('\0')).digest('base64url').slice(0, 16);
}

export function encodeCursor(c: DeltaCursor): string {
  if (c.watermark.length > MAX_WATERMARK) throw new OutpostError('invalid_request', `statements.accountsCursor: the watermark is longer than ${MAX_WATERMARK} characters`);
  return PREFIX + Buffer.from(JSON.stringify({ r: c.resource, h: c.fingerprint, w: c.watermark }), 'utf8').toString('base64url');
}

/** Decodes a cursor strictly (canonical encoding, exactly the three string fields); the refusal never echoes it. */
export function decodeCursor(raw: string): DeltaCursor {
  const bad = (): never => {
    throw new OutpostError('invalid_request', 'since: not a cursor made by a SQL resource listing');
  };
  if (!raw.startsWith(PREFIX)) return bad();
  const body = raw.slice(PREFIX.length);
  if (!BODY.test(body)) return bad();
  const bytes = Buffer.from(body, 'base64url');
  if (bytes.toString('base64url') !== body) return bad();
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    return bad();
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return bad();
  const v = value as Record<string, unknown>;
  const keys = Object.keys(v).sort().join(',');
  if (keys !== 'h,r,w' || typeof v.r !== 'string' || typeof v.h !== 'string' || typeof v.w !== 'string' || v.w.length > MAX_WATERMARK) return bad();
  return { resource: v.r, fingerprint: v.h, watermark: v.w };
}
