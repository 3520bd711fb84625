import type { TSchema } from '@sinclair/typebox';
import { ALL_SCHEMAS } from './schemas.js';
import { PROTOCOL_VERSION } from './version.js';

/** An OpenAPI 3.1 document (plain JSON). */
export type OpenApiDocument = Record<string, unknown>;

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (name: string) => ({ content: { 'application/json': { schema: ref(name) } } });
const errors = {
  '400': { description: 'invalid_request', ...json('ErrorBody') },
  '401': { description: 'unauthorized', ...json('ErrorBody') },
  '403': { description: 'forbidden', ...json('ErrorBody') },
  '413': { description: 'too_large', ...json('ErrorBody') },
  '503': { description: 'unavailable (with Retry-After)', ...json('ErrorBody') },
};
const notFound = { '404': { description: 'not_found (also for a job of another pool)', ...json('ErrorBody') } };
const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };
const q = (name: string, type = 'string') => ({ name, in: 'query', required: false, schema: { type } });

function post(summary: string, body: string, ok: string, extra: Record<string, unknown> = {}, status = '200') {
  return { post: { summary, security: [{ bearer: [] }], requestBody: { required: true, ...json(body) }, responses: { [status]: { description: 'OK', ...json(ok) }, ...errors, ...extra } } };
}

/** A TypeBox schema as plain JSON Schema (drops TypeBox's symbol keys). */
function plain(schema: TSchema): unknown {
  return JSON.parse(JSON.stringify(schema));
}

/**
 * The OpenAPI document of wire protocol v1, built from the same TypeBox
 * schemas that validate requests, so it cannot drift from the server.
 */
export function buildOpenApi(): OpenApiDocument {
  const schemas: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(ALL_SCHEMAS)) schemas[name] = plain(s);
  return {
    openapi: '3.1.0',
    info: { title: 'Outpost integration-proxy', version: String(PROTOCOL_VERSION) },
    components: { schemas, securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    paths: {
      '/v1/agent/lease': post('Long-poll for jobs (agent token)', 'LeaseRequest', 'LeaseResponse'),
      '/v1/agent/heartbeat': post('Renew leases (agent token)', 'HeartbeatRequest', 'HeartbeatResponse'),
      '/v1/agent/results': post('Report results (agent token)', 'ResultsRequest', 'ResultsResponse'),
      '/v1/agent/release': post('Give leases back, spending no attempt (agent token)', 'ReleaseRequest', 'ReleaseResponse'),
      '/v1/agent/jobs/{id}/output': {
        ...post('Append one output page (agent token)', 'OutputRequest', 'OutputResponse', {
          ...notFound,
          '409': { description: 'lease_lost', ...json('ErrorBody') },
        }),
        parameters: [idParam],
      },
      '/v1/jobs': {
        ...post('Enqueue a job (admin token)', 'EnqueueRequest', 'EnqueueResponse', notFound, '201'),
        get: {
          summary: 'List jobs, newest first (admin token)',
          parameters: [q('pool'), q('status'), q('limit', 'integer')],
          responses: { '200': { description: 'OK', ...json('JobList') }, ...errors },
        },
      },
      '/v1/jobs/batch': post('Enqueue up to 1 000 jobs in one transaction (admin token)', 'BatchEnqueueRequest', 'BatchEnqueueResponse', notFound, '201'),
      '/v1/jobs/{id}': {
        get: {
          summary: 'A job; with waitMs, answers when it is terminal or after waitMs',
          parameters: [idParam, q('waitMs', 'integer')],
          responses: { '200': { description: 'OK', ...json('JobView') }, ...errors, ...notFound },
        },
      },
      '/v1/jobs/{id}/output': {
        get: {
          summary: 'Output records as NDJSON, in order',
          parameters: [idParam],
          responses: { '200': { description: 'One JSON record per line', content: { 'application/x-ndjson': { schema: { type: 'string' } } } }, ...errors, ...notFound },
        },
      },
      '/v1/jobs/{id}/cancel': {
        post: {
          summary: 'Cancel a queued or leased job',
          parameters: [idParam],
          responses: { '200': { description: 'OK', ...json('JobView') }, ...errors, ...notFound },
        },
      },
      '/v1/agents': {
        get: {
          summary: 'Agents of a pool (a bare array)',
          parameters: [q('pool')],
          responses: { '200': { description: 'OK', ...json('AgentList') }, ...errors },
        },
      },
      '/healthz': { get: { summary: 'Liveness', responses: { '200': { description: 'OK' } } } },
      '/readyz': { get: { summary: 'Readiness (store reachable)', responses: { '200': { description: 'OK' }, '503': errors['503'] } } },
    },
  };
}
