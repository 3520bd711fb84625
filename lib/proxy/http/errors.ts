import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { OutpostError, toWireError } from '../../util/errors.js';
import { REDACTED } from '../../util/redact.js';
import { HTTP_STATUS_BY_CODE } from '../../protocol/errors.js';
import type { Logger } from '../../log/index.js';

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
  return new OutpostError('internal', 'internal error', { cause: err });
}

/**
 * Connection-level failures of the store (PostgreSQL class 08/57P/53 and a
 * missing database, socket errors, a knex pool timeout, a busy SQLite file):
 * the caller should retry later, so they are 503, not 500.
 */
function isStoreUnavailable(err: unknown): boolean {
  const code = String((err as { code?: unknown }).code ?? '');
  const name = (err as { name?: unknown }).name;
  return (
    /^(08|57P|53)/.test(code) ||
    code === '3D000' ||
    /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|SQLITE_BUSY|SQLITE_LOCKED)/.test(code) ||
    name === 'KnexTimeoutError' ||
    /Connection terminated|connect ECONNREFUSED|Client was closed/.test(String((err as Error).message ?? ''))
  );
}

/** Pool tokens as `token create` makes them: never echoed, even as a field name. */
const TOKEN_SHAPE = /opt_[A-Za-z0-9_-]{16,}/g;

/**
 * Removes token values from a message: the caller's own bearer token (the
 * proxy keeps only hashes, so it cannot register pool tokens for redaction)
 * and anything shaped like a pool token. Registered secrets (the configured
 * admin token) are removed by toWireError.
 */
function scrub(message: string, req: FastifyRequest | undefined): string {
  let out = message.replace(TOKEN_SHAPE, REDACTED);
  const bearer = /^Bearer\s+(\S{4,})/i.exec(String(req?.headers.authorization ?? ''))?.[1];
  if (bearer) out = out.split(bearer).join(REDACTED);
  return out;
}

/** Sends `{"error": {code, message}}` with the status of its code. */
export function sendError(reply: FastifyReply, err: OutpostError, req?: FastifyRequest): FastifyReply {
  const status = HTTP_STATUS_BY_CODE[err.code] ?? 500;
  if (status === 503 || status === 429) reply.header('retry-after', String(Math.ceil((err.retryAfterMs ?? 1000) / 1000)));
  const wire = toWireError(err);
  return reply.code(status).send({ error: { code: wire.code, message: scrub(wire.message, req) } });
}

/** Installs the error and not-found handlers: a request never crashes the proxy. */
export function installErrorHandlers(app: FastifyInstance, log: Logger): void {
  app.setErrorHandler((err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    const e = toOutpostError(err);
    if (e.code === 'internal') log.error('request failed', { method: req.method, url: req.routeOptions.url, err });
    return sendError(reply, e, req);
  });
  app.setNotFoundHandler((req, reply) => sendError(reply, new OutpostError('not_found', `no route ${req.method} ${req.url.split('?')[0]}`), req));
}
