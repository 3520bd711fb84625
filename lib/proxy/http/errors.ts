import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { OutpostError, toWireError } from '../../util/errors.js';
import { REDACTED } from '../../util/redact.js';
import { HTTP_STATUS_BY_CODE } from '../../protocol/errors.js';
import type { Logger } from '../../log/index.js';
import { COUNT_PATTERN } from './query.js';

interface AjvError {
  instancePath?: string;
  message?: string;
  keyword?: string;
  params?: Record<string, unknown>;
}

/** `body.leases.0.jobId: must be string` — names the field, never echoes the value. */
function validationMessage(context: string, errors: readonly AjvError[]): string {
  const parts = errors.slice(0, 3).map((e) => {
    const path = context + (e.instancePath ?? '').replace(/\//g, '.');
    if (e.keyword === 'additionalProperties') return `${path}.${String(e.params?.additionalProperty)}: unknown field`;
    if (e.keyword === 'required') return `${path}.${String(e.params?.missingProperty)}: is required`;
    if (e.keyword === 'pattern' && e.params?.pattern === COUNT_PATTERN) return `${path}: must be a non-negative integer`;
    if (e.keyword === 'enum' && context === 'querystring' && Array.isArray(e.params?.allowedValues)) return `${path}: must be one of ${e.params.allowedValues.join(', ')}`;
    return `${path}: ${e.message ?? 'is invalid'}`;
  });
  return parts.join('; ') || `${context} is invalid`;
}

/**
 * Maps fastify's own errors (validation, body parsing, size) to the
 * wire errors of DESIGN. Parser messages are replaced by fixed text: Node's
 * JSON.parse message quotes the body, which may hold a secret.
 */
export function toOutpostError(err: FastifyError): OutpostError {
  if (err instanceof OutpostError) return err;
  const validation = (err as { validation?: AjvError[] }).validation;
  if (validation) {
    const context = (err as { validationContext?: string }).validationContext ?? 'request';
    return new OutpostError('invalid_request', validationMessage(context, validation));
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new OutpostError('too_large', 'request body is too large');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new OutpostError('invalid_request', 'content-type must be application/json');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new OutpostError('invalid_request', 'body: a JSON body is required');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new OutpostError('invalid_request', 'content-length does not match the body');
    default:
  }
  if (err instanceof SyntaxError || err.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
    return new OutpostError('invalid_request', 'body: malformed JSON');
  }
  if (err.statusCode === 413) return new OutpostError('too_large', 'request body is too large');
  if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
    return new OutpostError('invalid_request', 'invalid request');
  }
  if (isStoreUnavailable(err)) return new OutpostError('unavailable', 'the job store is unavailable', { cause: err, retryable: true, retryAfterMs: 2000 });
  if (isRefusedValue(err)) return new OutpostError('invalid_request', 'a value of this request cannot be stored (a NUL character, or a number out of range)', { cause: err });
  return new OutpostError('internal', 'internal error', { cause: err });
}

/**
 * PostgreSQL class 22 (data exception): the store refused a value the schema
 * let through, e.g. a NUL character in a text (22021) or an integer beyond
 * its column (22003). The request's data is at fault, so 400, not 500.
 */
function isRefusedValue(err: unknown): boolean {
  return /^22[0-9A-Z]{3}$/.test(fieldOf(err, 'code'));
}

/**
 * Connection-level failures of the store (PostgreSQL class 08/57P/53 and a
 * missing database, socket errors, a knex pool timeout, a busy SQLite file):
 * the caller should retry later, so they are 503, not 500.
 */
function isStoreUnavailable(err: unknown): boolean {
  const code = fieldOf(err, 'code');
  return (
    /^(08|57P|53)/.test(code) ||
    code === '3D000' ||
    /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|SQLITE_BUSY|SQLITE_LOCKED)/.test(code) ||
    fieldOf(err, 'name') === 'KnexTimeoutError' ||
    /Connection terminated|connect ECONNREFUSED|Client was closed/.test(fieldOf(err, 'message'))
  );
}

/** A string or number field of a thrown value (which may be anything, even null), else ''. */
function fieldOf(err: unknown, key: 'code' | 'name' | 'message'): string {
  const value = (err as Partial<Record<typeof key, unknown>> | null | undefined)?.[key];
  return typeof value === 'string' || typeof value === 'number' ? String(value) : '';
}

/**
 * Pool tokens as `token create` makes them, wherever a message quotes the
 * caller's input (a path): replaced by their shape, never by comparing with a
 * known value (messages are safe by construction; a rewrite by value would
 * tell a caller which of its guesses is a token). Starts only where a run of
 * token characters starts, so it is linear on any input.
 */
const TOKEN_SHAPE = /(?<![A-Za-z0-9_-])opt_[A-Za-z0-9_-]{16,}/g;

function scrub(message: string): string {
  return message.replace(TOKEN_SHAPE, REDACTED);
}

/** Sends `{"error": {code, message}}` with the status of its code. */
export function sendError(reply: FastifyReply, err: OutpostError): FastifyReply {
  const status = HTTP_STATUS_BY_CODE[err.code] ?? 500;
  if (status === 503 || status === 429 || (status === 426 && err.retryAfterMs !== undefined)) reply.header('retry-after', String(Math.ceil((err.retryAfterMs ?? 1000) / 1000)));
  const wire = toWireError(err);
  return reply.code(status).send({ error: { code: wire.code, message: scrub(wire.message) } });
}

/** Installs the error and not-found handlers: a request never crashes the proxy. */
export function installErrorHandlers(app: FastifyInstance, log: Logger): void {
  app.setErrorHandler((err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    const e = toOutpostError(err);
    if (e.code === 'internal') log.error('request failed', { method: req.method, url: req.routeOptions.url, err });
    return sendError(reply, e);
  });
  app.setNotFoundHandler((req, reply) => sendError(reply, new OutpostError('not_found', `no route ${req.method} ${shortPath(req.url)}`)));
}

/** The path of a URL for a message: no query string (it may carry anything), at most 200 characters. */
function shortPath(url: string): string {
  const path = url.split('?')[0] ?? '';
  return path.length > 200 ? `${path.slice(0, 200)}…` : path;
}

/**
 * Longest path parameter the router matches: a job id's own limit (`Id` in
 * lib/protocol/schemas.ts), so an id of up to 128 characters reaches the route
 * (and its 404), and a longer one is refused by {@link frameworkErrors}.
 */
export const MAX_PARAM_LENGTH = 128;

/**
 * Errors fastify raises before any route or hook runs (fastify's
 * `frameworkErrors` option): a path that is not valid percent-encoding (`/%`)
 * or a path parameter over {@link MAX_PARAM_LENGTH}. Answered in the
 * protocol's shape instead of fastify's own body, which quotes the path.
 */
export function frameworkErrors(err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  // Answered before any body is read: a body that follows (chunked on a GET or TRACE, measured) can break the
  // connection after the answer, so the client is told not to reuse it.
  const length = req.headers['content-length'];
  if (req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')) reply.header('connection', 'close');
  const e = err.code === 'FST_ERR_MAX_PARAM_LENGTH'
    ? new OutpostError('invalid_request', `path: a path parameter is longer than ${MAX_PARAM_LENGTH} characters`)
    : new OutpostError('invalid_request', 'path: not a valid URL (bad percent-encoding)');
  void sendError(reply, e);
}

/**
 * Requests Node's HTTP parser refuses before fastify sees them (a bad request
 * line or method, headers too large, a request that took too long to arrive):
 * the same `{"error": {code, message}}` body as every other answer, then the
 * connection is closed, as Node does.
 */
export function clientErrorHandler(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, reason, code, message] =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'Request Timeout', 'timeout', 'the request took too long to arrive']
      : err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'Request Header Fields Too Large', 'too_large', 'request headers are too large']
        : [400, 'Bad Request', 'invalid_request', 'malformed HTTP request'];
  const body = JSON.stringify({ error: { code, message } });
  // As Node itself does: never write into a response already under way on this connection.
  const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (socket.writable && !inFlight?.headersSent) {
    socket.write(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}
