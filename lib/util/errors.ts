// The codes, the error class and the wire form belong to the protocol (lib/protocol/errors.ts, a leaf);
// this module adds what turns any thrown value into them.
import { OutpostError, type ErrorCode, type WireError } from '../protocol/errors.js';

export { OutpostError, type ErrorCode, type OutpostErrorOptions, type WireError } from '../protocol/errors.js';

/** True for an abort raised by an AbortSignal (DOMException or Node's AbortError). */
export function isAbortError(err: unknown): boolean {
  return err instanceof Error && (err.name === 'AbortError' || (err as { code?: string }).code === 'ABORT_ERR');
}

/** A driver's or Node's error code, when it looks like one (`ECONNRESET`, `ERR_TLS_CERT_ALTNAME_INVALID`). */
function safeCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' && /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/.test(code) ? code : undefined;
}

/**
 * Turns any thrown value into the wire form. Messages are never rewritten by
 * value (a rewrite corrupts text and tells a caller which of its guesses is a
 * password): an OutpostError's message is safe by construction, and an
 * unknown error keeps none of its text, which could quote a connection
 * string or a secret; it becomes `internal` with its code or class name.
 */
export function toWireError(err: unknown): WireError {
  if (err instanceof OutpostError) {
    return { code: err.code, message: err.message, retryable: err.retryable };
  }
  if (isAbortError(err)) {
    return { code: 'aborted', message: 'the operation was aborted', retryable: true };
  }
  const what = safeCode(err) ?? (err instanceof Error && /^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(err.name) ? err.name : undefined);
  return { code: 'internal', message: `internal error${what ? ` (${what})` : ''}`, retryable: false };
}

/**
 * Any thrown value as an OutpostError: itself when it is one, otherwise its
 * wire form (`aborted`, or `internal` with only its code or class name) with
 * the original kept as `cause` for logs. Use this, not `String(err)`, where an
 * unknown error may end up in a job's error.
 */
export function coerceError(err: unknown): OutpostError {
  if (err instanceof OutpostError) return err;
  const wire = toWireError(err);
  return new OutpostError(wire.code as ErrorCode, wire.message, { retryable: wire.retryable, cause: err });
}
