/**
 * Stable, snake_case error codes. The first group maps to HTTP statuses of the
 * wire protocol; the rest describe why a job failed.
 */
export type ErrorCode =
  | 'invalid_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'lease_lost'
  | 'too_large'
  | 'rate_limited'
  | 'upgrade_required'
  | 'unavailable'
  | 'cancelled'
  | 'timeout'
  | 'expired'
  | 'aborted'
  | 'unknown_type'
  | 'unknown_resource'
  | 'invalid_credentials'
  | 'permission_denied'
  | 'tls_error'
  | 'unreachable'
  | 'busy'
  | 'conflict'
  | 'proxy_error'
  | 'config_error'
  | 'internal';

export interface OutpostErrorOptions {
  /** Whether trying again later may succeed. Defaults to false. */
  retryable?: boolean;
  /** The underlying error, kept for logs (redacted there), never sent on the wire. */
  cause?: unknown;
  /** Server-suggested wait before retrying, from `Retry-After`. */
  retryAfterMs?: number;
}

/** The one error class of Outpost: a stable `code`, a `retryable` flag and a safe message. */
export class OutpostError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message: string, opts: OutpostErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'OutpostError';
    this.code = code;
    this.retryable = opts.retryable ?? false;
    this.retryAfterMs = opts.retryAfterMs;
  }
}

/** The wire form of an error, as in a failed job's `error` or an HTTP error body. */
export interface WireError {
  code: string;
  message: string;
  retryable: boolean;
}

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
