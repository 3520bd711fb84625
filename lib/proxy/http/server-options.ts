import type { FastifyServerOptions } from 'fastify';
import type { ProxyConfig } from '../../config/proxy.js';
import { clientErrorHandler, frameworkErrors, MAX_PARAM_LENGTH } from './errors.js';

/**
 * How often Node checks connections against headersTimeout and requestTimeout
 * (default 30 s, which let slow clients hold a connection up to 30 s past them).
 */
const CONNECTIONS_CHECK_MS = 1000;

/** The HTTP server's options (fastify's), from the proxy's config; `tls` when HTTPS is configured. */
export function fastifyOptions(config: ProxyConfig, tls: { cert: Buffer; key: Buffer } | null): FastifyServerOptions {
  return {
    logger: false,
    bodyLimit: config.bodyLimitBytes,
    // Above the 60 s idle cut of common load balancers (headersTimeout: see below).
    keepAliveTimeout: config.keepAliveTimeoutMs,
    // Bounds receiving a request (headers and body), not the answer: a long poll, received at once, is not cut.
    requestTimeout: config.requestTimeoutMs,
    ...(tls ? { https: { ...tls, connectionsCheckingInterval: CONNECTIONS_CHECK_MS } } : { http: { connectionsCheckingInterval: CONNECTIONS_CHECK_MS } }),
    // Unknown fields are errors, not silently dropped; nothing is coerced.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false } },
    // Requests that arrive while closing get the protocol's 503 from our own hook, not fastify's body.
    return503OnClosing: false,
    // Bad URLs, over-long ids and unparsable requests answered in the protocol's shape (http/errors.ts).
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    frameworkErrors,
    clientErrorHandler,
  };
}

/**
 * headersTimeout: the keep-alive timeout + 1 s, at most requestTimeout (with the defaults 30 s).
 * DESIGN's 66 s guarded the keep-alive race of Node < 18, which counted an idle keep-alive connection's
 * wait into headersTimeout. Node 20 counts from a request's first byte (measured: an idle connection
 * outlives a 2 s headersTimeout), and checks requestTimeout only when headersTimeout is not above it,
 * so both bound a request's arrival and idle keep-alive stays 65 s.
 */
export function headersTimeoutMs(config: ProxyConfig): number {
  return Math.min(config.keepAliveTimeoutMs + 1000, config.requestTimeoutMs);
}
