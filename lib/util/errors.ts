import { redact } from './redact.js';

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
  | 'unavailable'
  | 'cancelled'
  | 'timeout'
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

/**
 * Turns any thrown value into the wire form. Unknown errors become
 * `internal` and keep only their message; every message is redacted so that a
 * secret in a driver's error text never leaves the process.
 */
export function toWireError(err: unknown): WireError {
  if (err instanceof OutpostError) {
    return { code: err.code, message: redact(err.message), retryable: err.retryable };
  }
  if (isAbortError(err)) {
    return { code: 'aborted', message: 'the operation was aborted', retryable: true };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'internal', message: redact(message || 'internal error'), retryable: false };
}
