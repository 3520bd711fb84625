import type { ErrorCode } from '../util/errors.js';

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
