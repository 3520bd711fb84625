import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import { OutpostError } from '../../util/errors.js';
import { ERROR_RESPONSES, type OpenApiDocument } from '../../protocol/openapi.js';
import { collectRoutes, openApiOf } from './openapi-routes.js';
import { registerAgentRoutes } from './agent-routes.js';
import { registerOutputRoutes } from './output-routes.js';
import { registerJobRoutes } from './job-routes.js';
import { registerPoolRoutes } from './pool-routes.js';
import { installErrorHandlers, sendError } from './errors.js';
import { installJsonParser, repeatedQueryError } from './json-body.js';
import type { RouteDeps, RouteOptions } from './context.js';
import { ping } from '../store/db.js';
import { dashboardPage } from '../dashboard.js';
import { accessOf } from './auth.js';
import { metricsScope, renderMetrics } from './metrics-view.js';
import { PACKAGE_VERSION } from '../../util/version.js';

/**
 * The body a refused (unauthenticated or wrong-role) request may still send:
 * up to this it is drained unread, so the client reads its 401/403 and keeps
 * the connection; a larger or chunked body gets the answer and a closed
 * connection, never read (a 4 MiB body costs the proxy nothing).
 */
export const REFUSED_BODY_LIMIT_BYTES = 64 * 1024;

/** The answer of `/healthz` and `/readyz`. */
const Status = Type.Object({ status: Type.String() });

function bodyOverRefusedLimit(req: FastifyRequest): boolean {
  const length = req.headers['content-length'];
  if (req.headers['transfer-encoding'] !== undefined) return true;
  return length !== undefined && !(/^\d{1,9}$/.test(length) && Number(length) <= REFUSED_BODY_LIMIT_BYTES);
}

/**
 * Registers every route of the proxy on `app`; returns the OpenAPI document
 * generated from the routes registered (also served at `/openapi.json`).
 */
export function registerRoutes(app: FastifyInstance, opts: RouteOptions, deps: RouteDeps): OpenApiDocument {
  const routes = collectRoutes(app);
  installJsonParser(app);
  installErrorHandlers(app, deps.log);
  app.addHook('onRequest', async (req, reply) => {
    // Decided on the route the router matched (the decoded path), before the body is read.
    const access = accessOf(req.routeOptions.url, req.method);
    if (access === 'public') return;
    if (access === 'optional') {
      if (req.headers.authorization !== undefined) await deps.auth.authenticate(req, access);
      return;
    }
    // While stopping, answer in the protocol's own form; agents back off and find another replica.
    if (deps.state() !== 'running') return sendError(reply, new OutpostError('unavailable', 'the proxy is stopping', { retryAfterMs: 1000 }));
    try {
      await deps.auth.authenticate(req, access);
    } catch (err) {
      // A refused caller's body is never parsed; a large one is not even read.
      if (bodyOverRefusedLimit(req)) reply.header('connection', 'close');
      throw err;
    }
  });
  app.addHook('preValidation', (req, _reply, done) => {
    done(repeatedQueryError(req));
  });
  app.addHook('onResponse', async (req, reply) => {
    // The route pattern, not the URL: job ids must not become label values.
    deps.metrics.requests.inc({ route: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) });
  });
  registerAgentRoutes(app, opts, deps);
  registerOutputRoutes(app, deps);
  registerJobRoutes(app, opts, deps);
  registerPoolRoutes(app, deps);

  app.get('/healthz', { schema: { response: { 200: Status } }, config: { doc: { summary: 'Liveness', responses: {} } } }, () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { response: { 200: Status } }, config: { doc: { summary: 'Readiness (store reachable)', responses: { '503': ERROR_RESPONSES['503'] } } } }, async (_req, reply) => {
    if (deps.state() !== 'running') return sendError(reply, new OutpostError('unavailable', 'not serving'));
    try {
      await ping(deps.db);
    } catch {
      return sendError(reply, new OutpostError('unavailable', 'the job store is unreachable', { retryAfterMs: 5000 }));
    }
    return { status: 'ready' };
  });
  // Pool names only to a scrape with a token allowed to see them (metrics-view.ts).
  app.get('/metrics', async (req, reply) => {
    reply.type(deps.metrics.registry.contentType);
    return renderMetrics(deps.metrics.registry, metricsScope(deps.auth.known(req)));
  });
  // The Agents dashboard: a static page; it reads the job-side API with a viewer or admin token the operator enters.
  const dashboard = dashboardPage({ version: PACKAGE_VERSION });
  app.get('/', async (_req, reply) => reply.headers(dashboard.headers).send(dashboard.html));
  const openapi = openApiOf(routes);
  app.get('/openapi.json', () => openapi);
  return openapi;
}
