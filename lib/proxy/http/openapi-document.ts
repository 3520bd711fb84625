import Fastify from 'fastify';
import type { OpenApiDocument } from '../../protocol/openapi.js';
import { registerRoutes } from './app.js';
import type { RouteDeps } from './context.js';

/**
 * The OpenAPI document of the proxy, generated from its routes as
 * registerRoutes declares them, on a fastify app that is built but never
 * started (`npm run docs`, the spec). Registering calls no dependency (only
 * the handlers and hooks do, and none runs), so an empty deps object serves.
 */
export function buildOpenApi(): OpenApiDocument {
  return registerRoutes(Fastify(), { maxWaitMs: 0 }, {} as RouteDeps);
}
