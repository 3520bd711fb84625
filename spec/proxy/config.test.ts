import { describe, it, expect } from '@jest/globals';
import { join } from 'node:path';
import { loadProxyConfig } from '../../lib/config/proxy.js';
import { redact } from '../../lib/util/redact.js';
import { buildOpenApi } from '../../lib/proxy/http/openapi-document.js';
import { JobStatus } from '../../lib/protocol/schemas.js';
import { ROOT } from '../fixtures/proxy-process.js';

describe('proxy config', () => {
  it('has the DESIGN defaults', () => {
    expect(loadProxyConfig({ env: {} })).toMatchObject({
      host: '127.0.0.1',
      port: 8443,
      store: { url: 'sqlite:./data/proxy.db' },
      adminToken: null,
      leaseTtlMs: 30_000,
      maxWaitMs: 30_000,
      presenceMs: 90_000,
      reaperIntervalMs: 5000,
      tls: { certFile: null, keyFile: null },
      log: { level: 'info', format: 'json' },
      bodyLimitBytes: 4 * 1024 * 1024,
    });
  });

  it('reads every key from the environment', () => {
    const cfg = loadProxyConfig({
      env: {
        PROXY_HOST: '0.0.0.0', PROXY_PORT: '0', PROXY_STORE: 'postgres://u:pw-in-url-123@db/outpost', PROXY_ADMIN_TOKEN: 'admin-token-from-env-42',
        PROXY_LEASE_TTL_MS: '1500', PROXY_MAX_WAIT_MS: '20000', PROXY_PRESENCE_MS: '60000', PROXY_REAPER_INTERVAL_MS: '100',
        PROXY_TLS_CERT_FILE: '/c.pem', PROXY_TLS_KEY_FILE: '/k.pem', PROXY_LOG_LEVEL: 'debug', PROXY_LOG_FORMAT: 'pretty', PROXY_BODY_LIMIT_BYTES: '1000',
      },
    });
    expect(cfg).toMatchObject({
      host: '0.0.0.0', port: 0, store: { url: 'postgres://u:pw-in-url-123@db/outpost' }, adminToken: 'admin-token-from-env-42',
      leaseTtlMs: 1500, maxWaitMs: 20_000, presenceMs: 60_000, reaperIntervalMs: 100,
      tls: { certFile: '/c.pem', keyFile: '/k.pem' }, log: { level: 'debug', format: 'pretty' }, bodyLimitBytes: 1000,
    });
    // Both secrets are registered for redaction when the config is loaded.
    expect(redact('x admin-token-from-env-42 y pw-in-url-123')).not.toMatch(/admin-token-from-env-42|pw-in-url-123/);
  });

  it('accepts the commented example in strict mode', () => {
    const cfg = loadProxyConfig({ env: {}, file: join(ROOT, 'config', 'proxy.example.json') });
    expect(cfg.port).toBe(8443);
  });

  it.each([
    [{ PROXY_PORT: 'http' }, 'port'],
    [{ PROXY_LEASE_TTL_MS: '0' }, 'leaseTtlMs'],
    [{ PROXY_STORE: 'mysql://x' }, 'store.url'],
    [{ PROXY_LOG_FORMAT: 'xml' }, 'log.format'],
    [{ PROXY_ADMIN_TOKEN: 'short' }, 'adminToken'],
    [{ PROXY_TLS_CERT_FILE: '/only-cert.pem' }, 'tls.certFile'],
  ])('rejects %p naming %s', (env, key) => {
    expect(() => loadProxyConfig({ env })).toThrow(key);
  });

  it('never shows a sensitive value in its error', () => {
    let message = '';
    try {
      loadProxyConfig({ env: { PROXY_STORE: 'mysql://user:sekrit-value@x' } });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('store.url');
    expect(message).not.toContain('sekrit-value');
  });
});

describe('OpenAPI document', () => {
  it('is generated from the registered routes and the protocol schemas, and every $ref resolves', () => {
    const doc = buildOpenApi() as { paths: Record<string, unknown>; components: { schemas: Record<string, unknown> } };
    const refs = JSON.stringify(doc.paths).match(/#\/components\/schemas\/(\w+)/g) ?? [];
    expect(refs.length).toBeGreaterThan(10);
    for (const r of refs) expect(doc.components.schemas[r.split('/').at(-1)!]).toBeDefined();
    expect(Object.keys(doc.paths).sort()).toEqual(
      ['/healthz', '/readyz', '/v1/agent/goodbye', '/v1/agent/heartbeat', '/v1/agent/jobs/{id}/output', '/v1/agent/lease', '/v1/agent/release', '/v1/agent/results',
        '/v1/agents', '/v1/jobs', '/v1/jobs/batch', '/v1/jobs/{id}', '/v1/jobs/{id}/cancel', '/v1/jobs/{id}/output', '/v1/pools/{pool}/key'].sort(),
    );
    expect(JSON.stringify(doc)).not.toContain('Symbol');
  });

  it('takes parameters and answers from the routes\' own schemas', () => {
    type Op = { parameters?: Array<{ name: string; in: string; schema: { enum?: string[] } }>; responses: Record<string, { content?: Record<string, unknown> }>; security?: unknown };
    const paths = buildOpenApi().paths as Record<string, Record<string, Op>>;
    const list = paths['/v1/jobs']!.get!;
    expect(list.parameters!.map((p) => `${p.in}:${p.name}`)).toEqual(['query:pool', 'query:status', 'query:limit', 'query:cursor']);
    // The statuses come from the protocol's JobStatus, not a copy.
    expect(list.parameters!.find((p) => p.name === 'status')!.schema.enum).toEqual(JobStatus.anyOf.map((s) => s.const));
    expect(paths['/v1/jobs/{id}']!.get!.parameters!.map((p) => `${p.in}:${p.name}`)).toEqual(['path:id', 'query:waitMs']);
    // Every operation declares its success answer; every /v1 one needs a token, the probes none.
    for (const [path, item] of Object.entries(paths)) {
      for (const op of Object.values(item)) {
        expect(Object.keys(op.responses).some((s) => s.startsWith('2'))).toBe(true);
        expect(op.security !== undefined).toBe(path.startsWith('/v1/'));
      }
    }
    expect(paths['/v1/jobs']!.post!.responses['201']!.content).toEqual({ 'application/json': { schema: { $ref: '#/components/schemas/EnqueueResponse' } } });
  });
});
