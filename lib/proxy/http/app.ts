import type { FastifyInstance } from 'fastify';
import { OutpostError } from '../../util/errors.js';
import { buildOpenApi } from '../../protocol/openapi.js';
import { registerAgentRoutes } from './agent-routes.js';
import { registerJobRoutes } from './job-routes.js';
import { installErrorHandlers, sendError } from './errors.js';
import type { RouteDeps, RouteOptions } from './context.js';
import { dashboardHtml } from '../dashboard.js';
import { PACKAGE_VERSION } from '../../util/version.js';

/**
 * JSON bodies parsed by hand so that a parse error never quotes the body (it
 * may hold a token) and an empty body on a body-less POST (cancel) is fine.
 */
function installJsonParser(app: FastifyInstance): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch {
      done(new OutpostError('invalid_request', 'body: malformed JSON'), undefined);
    }
  });
}

/** Registers every route of the proxy on `app`. */
export function registerRoutes(app: FastifyInstance, opts: RouteOptions, deps: RouteDeps): void {
  installJsonParser(app);
  installErrorHandlers(app, deps.log);
  app.addHook('onRequest', async (req, reply) => {
    if (!req.url.startsWith('/v1/')) return;
    // While stopping, answer in the protocol's own form; agents back off and find another replica.
    if (deps.state() !== 'running') return sendError(reply, new OutpostError('unavailable', 'the proxy is stopping', { retryAfterMs: 1000 }), req);
    await deps.auth.authenticate(req);
  });
  app.addHook('onResponse', async (req, reply) => {
    // The route pattern, not the URL: job ids must not become label values.
    deps.metrics.requests.inc({ route: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) });
  });
  registerAgentRoutes(app, opts, deps);
  registerJobRoutes(app, opts, deps);

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    if (deps.state() !== 'running') return sendError(reply, new OutpostError('unavailable', 'not serving'));
    try {
      await deps.db.knex.raw('SELECT 1');
    } catch {
      return sendError(reply, new OutpostError('unavailable', 'the job store is unreachable', { retryAfterMs: 5000 }));
    }
    return { status: 'ready' };
  });
  app.get('/metrics', async (_req, reply) => {
    reply.type(deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });
  // The Agents dashboard: a static page; it reads the job-side API with an admin token the operator enters.
  const dashboard = dashboardHtml({ version: PACKAGE_VERSION });
  app.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(dashboard));
  const openapi = buildOpenApi();
  app.get('/openapi.json', async () => openapi);
}
