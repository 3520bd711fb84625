import type { TSchema } from '@sinclair/typebox';
import { ALL_SCHEMAS } from './schemas.js';
import { PROTOCOL_VERSION } from './version.js';

/**
 * The shared parts of the OpenAPI document of wire protocol v1: component
 * schemas, error answers and the security scheme. The paths are not written
 * here: lib/proxy/http/openapi-routes.ts generates them from the routes the
 * proxy registers (their params, querystring and body schemas, summaries and
 * answers), so the document cannot drift from the server.
 */

/** An OpenAPI 3.1 document (plain JSON). */
export type OpenApiDocument = Record<string, unknown>;
/** The `responses` object of one operation. */
export type OpenApiResponses = Record<string, Record<string, unknown>>;

/** A reference to a component schema of ALL_SCHEMAS. */
export const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
/** A JSON content whose schema is the named component. */
export const json = (name: string) => ({ content: { 'application/json': { schema: ref(name) } } });

/** The error answers every authenticated route may give. */
export const ERROR_RESPONSES = {
  '400': { description: 'invalid_request', ...json('ErrorBody') },
  '401': { description: 'unauthorized', ...json('ErrorBody') },
  '403': { description: 'forbidden', ...json('ErrorBody') },
  '413': { description: 'too_large (also: an output or agent-description quota)', ...json('ErrorBody') },
  '429': { description: 'rate_limited, with Retry-After: a quota (requests per token, agents, parked polls, queued jobs per pool)', ...json('ErrorBody') },
  '503': { description: 'unavailable (with Retry-After)', ...json('ErrorBody') },
} satisfies OpenApiResponses;
/** 404 for a job: also for a job of another pool. */
export const NOT_FOUND: OpenApiResponses = { '404': { description: 'not_found (also for a job of another pool)', ...json('ErrorBody') } };

/** A TypeBox schema as plain JSON Schema (drops TypeBox's symbol keys). */
export function plain(schema: TSchema): Record<string, unknown> {
  return JSON.parse(JSON.stringify(schema)) as Record<string, unknown>;
}

/** The component name of a schema object of ALL_SCHEMAS (by identity), if it is one. */
export function componentName(schema: unknown): string | undefined {
  for (const [name, s] of Object.entries(ALL_SCHEMAS)) if (s === schema) return name;
  return undefined;
}

const BEARER = {
  type: 'http',
  scheme: 'bearer',
  description:
    'A pool token (`integration-proxy token create`) or the configured admin token. Roles: an agent token may use only /v1/agent/*; ' +
    'an admin token only the job side (/v1/jobs*, /v1/agents) of its pool, never /v1/agent/*; a viewer token only GET on the job side. ' +
    'Every request but /healthz, /readyz, /, /openapi.json and /metrics is authenticated before its body is read: 401 without a valid ' +
    '(unrevoked, unexpired) token, 403 for the wrong role. /metrics needs no token but shows pool labels only to an admin or viewer token.',
};

/** The whole document around the given paths: info, component schemas and the security scheme. */
export function openApiDocument(paths: Record<string, unknown>): OpenApiDocument {
  const schemas: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(ALL_SCHEMAS)) schemas[name] = plain(s);
  return {
    openapi: '3.1.0',
    info: { title: 'Outpost integration-proxy', version: String(PROTOCOL_VERSION) },
    components: { schemas, securitySchemes: { bearer: BEARER } },
    paths,
  };
}
