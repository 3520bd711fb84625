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
  '413': { description: 'too_large (also: an output or agent-description quota)', ...json('ErrorBody') },
  '429': { description: 'rate_limited, with Retry-After: a quota (requests per token, agents, parked polls, queued jobs per pool)', ...json('ErrorBody') },
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
    components: { schemas, securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description:
            'A pool token (`integration-proxy token create`) or the configured admin token. Roles: an agent token may use only /v1/agent/*; ' +
            'an admin token only the job side (/v1/jobs*, /v1/agents) of its pool, never /v1/agent/*; a viewer token only GET on the job side. ' +
            'Every request but /healthz, /readyz, /, /openapi.json and /metrics is authenticated before its body is read: 401 without a valid ' +
            '(unrevoked, unexpired) token, 403 for the wrong role. /metrics needs no token but shows pool labels only to an admin or viewer token.',
        },
      } },
    paths: {
      '/v1/agent/lease': post('Long-poll for jobs (agent token); a non-empty answer carries heldMs, the hold before the claim; answers name latestVersion/minVersion when configured; 426 upgrade_required for an agent below minVersion or with an unparseable version', 'LeaseRequest', 'LeaseResponse'),
      '/v1/agent/heartbeat': post('Renew leases (agent token)', 'HeartbeatRequest', 'HeartbeatResponse'),
      '/v1/agent/results': post('Report results (agent token)', 'ResultsRequest', 'ResultsResponse'),
      '/v1/agent/release': post('Give leases back, spending no attempt (agent token)', 'ReleaseRequest', 'ReleaseResponse'),
      '/v1/agent/goodbye': post('Say the agent is draining or offline, shown at once in GET /v1/agents (agent token)', 'GoodbyeRequest', 'GoodbyeResponse'),
      '/v1/agent/jobs/{id}/output': {
        ...post('Append one output page (agent token)', 'OutputRequest', 'OutputResponse', {
          ...notFound,
          '409': { description: 'lease_lost', ...json('ErrorBody') },
        }),
        parameters: [idParam],
      },
      '/v1/jobs': {
        ...post('Enqueue a job (admin token); 400 names the field of an unknown type or a payload that does not match; warnings when no agent serves the resource', 'EnqueueRequest', 'EnqueueResponse', notFound, '201'),
        get: {
          summary: 'One page of jobs, newest first (admin token): pass nextCursor back as cursor; null on the last page',
          parameters: [q('pool'), q('status'), q('limit', 'integer'), q('cursor')],
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
          summary: 'Agents of a pool: with limit or cursor one page {agents, nextCursor}; without, a bare array of the first 1 000 (deprecated; X-Next-Cursor names the rest)',
          parameters: [q('pool'), q('limit', 'integer'), q('cursor')],
          responses: {
            '200': {
              description: 'OK',
              content: { 'application/json': { schema: { oneOf: [ref('AgentPage'), ref('AgentList')] } } },
            },
            ...errors,
          },
        },
      },
      '/v1/pools/{pool}/key': {
        parameters: [{ name: 'pool', in: 'path', required: true, schema: { type: 'string' } }],
        get: {
          summary: "The pool's public sealing key (admin or viewer token of the pool): seal secret payload fields (passwords) with it (libsodium crypto_box_seal)",
          security: [{ bearer: [] }],
          responses: { '200': { description: 'OK', ...json('PoolKeyView') }, ...errors, '404': { description: 'not_found: the pool has no key (also for another pool)', ...json('ErrorBody') } },
        },
        put: {
          summary: "Set the pool's public sealing key (admin token of the pool, or the configured admin token); the private key stays with the pool's agents",
          security: [{ bearer: [] }],
          requestBody: { required: true, ...json('PoolKeyRequest') },
          responses: { '200': { description: 'OK', ...json('PoolKeyView') }, ...errors },
        },
      },
      '/healthz': { get: { summary: 'Liveness', responses: { '200': { description: 'OK' } } } },
      '/readyz': { get: { summary: 'Readiness (store reachable)', responses: { '200': { description: 'OK' }, '503': errors['503'] } } },
    },
  };
}
