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

/** HTTP statuses of the wire protocol's error codes (DESIGN "Wire protocol v1"). */
export const HTTP_STATUS_BY_CODE: Partial<Record<ErrorCode, number>> = {
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  lease_lost: 409,
  too_large: 413,
  upgrade_required: 426,
  rate_limited: 429,
  unavailable: 503,
  internal: 500,
};

/** The code for an HTTP status an agent receives (the inverse of the table; 5xx → unavailable). */
export function codeForHttpStatus(status: number): ErrorCode {
  for (const [code, s] of Object.entries(HTTP_STATUS_BY_CODE)) if (s === status) return code as ErrorCode;
  return status >= 500 ? 'unavailable' : 'invalid_request';
}

/** Retryable from the caller's side: the server may answer differently later. */
export function isRetryableHttpStatus(status: number): boolean {
  return status === 429 || status === 502 || status === 503 || status === 504 || status === 500;
}
