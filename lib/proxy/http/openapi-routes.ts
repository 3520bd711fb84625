import type { FastifyInstance } from 'fastify';
import type { TSchema } from '@sinclair/typebox';
import {
  componentName,
  openApiDocument,
  plain,
  ref,
  type OpenApiDocument,
  type OpenApiResponses,
} from '../../protocol/openapi.js';
import { accessOf, type Access } from './auth.js';

/**
 * A route's entry in the OpenAPI document; its parameters, body and JSON
 * answers come from the route's own schemas (`schema.response`).
 */
export interface RouteDoc {
  summary: string;
  /** The answers not in `schema.response`: errors, and bodies that are not JSON. */
  responses: OpenApiResponses;
  /** Request media types besides JSON (an OpenAPI `content` entry each), e.g. the NDJSON output page. */
  requestContent?: Record<string, unknown>;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route's entry in the OpenAPI document (openapi-routes.ts); a route without it is not listed. */
    doc?: RouteDoc;
  }
}

/** What a registered route declares: the source of its OpenAPI operation. */
export interface RegisteredRoute {
  method: string;
  /** fastify's pattern, e.g. `/v1/jobs/:id`. */
  url: string;
  params?: TSchema;
  querystring?: TSchema;
  body?: TSchema;
  /** The JSON answers by status (fastify serialises with them). */
  response?: Record<string, TSchema>;
  doc: RouteDoc;
  /** The role the auth hook requires (auth.ts `accessOf`). */
  access: Access;
}

/**
 * Collects every route registered on `app` after this call that carries
 * `config.doc` (fastify runs onRoute hooks synchronously at registration).
 * The returned array fills as routes are added.
 */
export function collectRoutes(app: FastifyInstance): RegisteredRoute[] {
  const routes: RegisteredRoute[] = [];
  app.addHook('onRoute', (r) => {
    const doc = r.config?.doc;
    if (!doc) return;
    const schema = (r.schema ?? {}) as { params?: TSchema; querystring?: TSchema; body?: TSchema; response?: Record<string, TSchema> };
    for (const method of Array.isArray(r.method) ? r.method : [r.method]) {
      // fastify's automatic HEAD twin of a GET is not a route of the protocol.
      if (method === 'HEAD') continue;
      routes.push({ method, url: r.url, ...schema, doc, access: accessOf(r.url, method) });
    }
  });
  return routes;
}

/** The parameters of an object schema (`path` ones are always required). */
function parametersOf(schema: TSchema | undefined, where: 'path' | 'query'): Array<Record<string, unknown>> {
  const props = (schema?.properties ?? {}) as Record<string, TSchema>;
  const required = new Set<string>((schema?.required as string[] | undefined) ?? []);
  return Object.entries(props).map(([name, s]) => ({ name, in: where, required: where === 'path' || required.has(name), schema: plain(s) }));
}

/** A schema as a component reference when it is one (or a union of them), else inline. */
function schemaOf(s: TSchema): unknown {
  const name = componentName(s);
  if (name) return ref(name);
  const alternatives = s.anyOf as TSchema[] | undefined;
  const names = alternatives?.map(componentName);
  if (names?.length && names.every((n): n is string => n !== undefined)) return { oneOf: names.map((n) => ref(n)) };
  return plain(s);
}

/** The OpenAPI document of the collected routes, in registration order. */
export function openApiOf(routes: readonly RegisteredRoute[]): OpenApiDocument {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const path = r.url.replace(/:(\w+)/g, '{$1}');
    const parameters = [...parametersOf(r.params, 'path'), ...parametersOf(r.querystring, 'query')];
    // A body schema per media type (fastify's `content` form) documents its JSON one; the others come from the doc.
    const perType = (r.body as { content?: Record<string, { schema: TSchema }> } | undefined)?.content;
    const jsonBody = perType ? perType['application/json']?.schema : r.body;
    const body = jsonBody ? { required: true, content: { 'application/json': { schema: schemaOf(jsonBody) }, ...r.doc.requestContent } } : undefined;
    const ok: OpenApiResponses = {};
    for (const [status, s] of Object.entries(r.response ?? {})) ok[status] = { description: 'OK', content: { 'application/json': { schema: schemaOf(s) } } };
    (paths[path] ??= {})[r.method.toLowerCase()] = {
      summary: r.doc.summary,
      ...(r.access === 'public' ? {} : { security: [{ bearer: [] }] }),
      ...(parameters.length ? { parameters } : {}),
      ...(body ? { requestBody: body } : {}),
      responses: { ...ok, ...r.doc.responses },
    };
  }
  return openApiDocument(paths);
}
