import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Api, createTestDatabase, startTestProxy, tempDir, TEST_ADMIN_TOKEN, type TestProxy } from '../fixtures/proxy-server.js';
import { RawClient, type RawAnswer } from '../fixtures/raw-http.js';
import { sample } from '../fixtures/metrics.js';

/**
 * Authentication before anything else, and roles, against a started proxy
 * on both stores: every request is refused on the route the router matched
 * (encoded paths included) before its body is parsed; each role reaches only
 * its routes; `/metrics` shows pool names only to a token that may see them;
 * the dashboard is served with its security headers.
 */
const POOL = 'acme-secret-pool';
const OTHER = 'globex-other-pool';

describe.each(['sqlite', 'postgres'] as const)('authentication and roles on %s', (kind) => {
  let t: TestProxy;
  let raw: RawClient;
  let viewer: string;
  let root: Api;
  let cleanup: () => Promise<void>;
  let jobId: string;

  beforeAll(async () => {
    let url: string;
    if (kind === 'sqlite') {
      const tmp = tempDir();
      url = 'sqlite:' + join(tmp.dir, 'auth.db');
      cleanup = async () => tmp.cleanup();
    } else {
      const db = await createTestDatabase();
      url = db.url;
      cleanup = () => db.drop();
    }
    t = await startTestProxy({ store: url, pool: POOL });
    viewer = await t.proxy.createToken({ pool: POOL, role: 'viewer' });
    await t.proxy.createToken({ pool: OTHER });
    raw = new RawClient(t.proxy.url);
    root = new Api(t.proxy.url, TEST_ADMIN_TOKEN);
    jobId = await t.admin.enqueue({ type: 'ping' });
    await root.enqueue({ pool: OTHER, type: 'ping' });
  });
  afterAll(async () => {
    raw?.close();
    await t?.stop();
    await cleanup?.();
  });

  const bearer = (token: string | null): Record<string, string> => (token === null ? {} : { authorization: `Bearer ${token}` });
  const send = (method: string, path: string, token: string | null, body?: string): Promise<RawAnswer> =>
    raw.send({ method, path, headers: { ...bearer(token), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(body !== undefined ? { body } : {}) });
  const codeOf = (a: RawAnswer) => (JSON.parse(a.text) as { error?: { code: string } }).error?.code;
  const jobCount = async () => ((await root.get('/v1/jobs?limit=1000')).body.jobs as unknown[]).length;

  it('an encoded or unknown path is authenticated before its body is parsed: malformed and deep bodies get 401, not 400', async () => {
    const deep = '['.repeat(30_000) + ']'.repeat(30_000);
    const paths = ['/%761/agent/lease', '/v%31/agent/lease', '/v1/agent/%6cease', '/%76%31/jobs', '/v1/%6aobs/batch', '/nope', '/V1/agent/lease', '/v1/agent/lease/'];
    for (const path of paths) {
      for (const body of ['{"agentId":', deep, '"just a string"']) {
        const a = await send('POST', path, null, body);
        expect([path, a.status, codeOf(a)]).toEqual([path, 401, 'unauthorized']);
        expect(a.text).not.toContain('malformed');
      }
    }
    // A bad token is as good as none.
    expect((await send('POST', '/%761/agent/lease', 'opt_not-a-real-token-at-all', '{"x":')).status).toBe(401);
  });

  it('a token of the wrong role is refused (403) before its body is parsed, on encoded paths too', async () => {
    for (const [path, token] of [['/%761/agent/lease', t.admin.token], ['/v%31/agent/results', viewer], ['/v1/%6aobs', t.agent.token], ['/v1/jobs/batch', viewer]] as const) {
      const a = await send('POST', path, token, '{"oops":');
      expect([path, a.status, codeOf(a)]).toEqual([path, 403, 'forbidden']);
    }
  });

  it('a 4 MiB body without a token is refused (the connection may close before it is read); the proxy answers at once afterwards', async () => {
    const big = '['.repeat(2 * 1024 * 1024) + ']'.repeat(2 * 1024 * 1024);
    const outcomes = await Promise.all(
      Array.from({ length: 4 }, () => send('POST', '/%761/agent/lease', null, big).then((a) => a.status, (e: NodeJS.ErrnoException) => e.code ?? e.message)),
    );
    for (const o of outcomes) expect([401, 'EPIPE', 'ECONNRESET']).toContain(o);
    const fresh = new RawClient(t.proxy.url);
    try {
      expect((await fresh.send({ method: 'GET', path: '/healthz' })).status).toBe(200);
    } finally {
      fresh.close();
    }
  });

  it('refused requests change nothing in the store', async () => {
    const before = await jobCount();
    const job = JSON.stringify({ type: 'ping' });
    for (const [path, token] of [['/%76%31/jobs', null], ['/v1/jobs', null], ['/v1/jobs', viewer], ['/v1/jobs', t.agent.token], ['/v1/jobs/batch', viewer]] as const) {
      const body = path.endsWith('batch') ? JSON.stringify({ jobs: [{ type: 'ping' }] }) : job;
      expect([401, 403]).toContain((await send('POST', path, token, body)).status);
    }
    expect((await send('POST', `/v1/jobs/${jobId}/cancel`, viewer)).status).toBe(403);
    expect(await jobCount()).toBe(before);
    expect((await root.get(`/v1/jobs/${jobId}`)).body.status).toBe('queued');
  });

  /** Every route of the OpenAPI document, each principal: allowed (any answer but 401/403), 401 or 403. */
  it('role matrix: agent tokens only on /v1/agent/*, admin tokens never there, viewer tokens only GET', async () => {
    const doc = (await root.get('/openapi.json')).body as { paths: Record<string, Record<string, unknown>> };
    const routes: Array<[string, string]> = [];
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const method of ['get', 'post', 'put', 'patch', 'delete']) if (item[method]) routes.push([method.toUpperCase(), path]);
    }
    for (const known of ['/v1/agent/lease', '/v1/agent/heartbeat', '/v1/agent/results', '/v1/agent/release', '/v1/agent/jobs/{id}/output', '/v1/jobs', '/v1/jobs/batch', '/v1/jobs/{id}', '/v1/jobs/{id}/output', '/v1/jobs/{id}/cancel', '/v1/agents']) {
      expect(routes.map(([, p]) => p)).toContain(known);
    }
    routes.push(['GET', '/metrics'], ['GET', '/'], ['GET', '/openapi.json']);
    const principals = { none: null, agent: t.agent.token, admin: t.admin.token, viewer, root: TEST_ADMIN_TOKEN } as const;
    const seen: string[] = [];
    for (const [method, template] of routes) {
      const path = template.replace(/\{[^}]+\}/g, jobId).replace(/\{pool\}/g, POOL);
      const kindOf = template.startsWith('/v1/agent/') ? 'agent' : !template.startsWith('/v1/') ? 'public' : method === 'GET' ? 'read' : 'write';
      for (const [who, token] of Object.entries(principals)) {
        // A malformed body: an allowed caller gets 400 for it, a refused one never gets that far.
        const a = await send(method, path, token, method === 'GET' ? undefined : '{"malformed":');
        const expected =
          kindOf === 'public' ? 'allowed'
            : who === 'none' ? 401
              : kindOf === 'agent' ? (who === 'agent' ? 'allowed' : 403)
                : kindOf === 'read' ? (who === 'agent' ? 403 : 'allowed')
                  : who === 'admin' || who === 'root' ? 'allowed' : 403;
        const got = a.status === 401 || a.status === 403 ? a.status : 'allowed';
        seen.push(`${method} ${template} ${who}: ${got === expected ? 'ok' : `expected ${expected}, got ${a.status} ${a.text.slice(0, 120)}`}`);
        expect(a.status).toBeLessThan(500);
      }
    }
    expect(seen.filter((l) => !l.endsWith(': ok'))).toEqual([]);
  });

  it('/metrics: no pool names without a token; a pool token sees its own pool; the configured admin token sees all', async () => {
    const anonymous = (await send('GET', '/metrics', null)).text;
    expect(anonymous).not.toContain(POOL);
    expect(anonymous).not.toContain(OTHER);
    expect(anonymous).not.toMatch(/pool="/);
    // Totals are still there, summed over pools.
    expect(sample(anonymous, 'outpost_proxy_queue_depth', { status: 'queued' })).toBeGreaterThanOrEqual(2);
    expect(anonymous).toContain('process_resident_memory_bytes');
    // An agent token sees what anyone sees.
    expect((await send('GET', '/metrics', t.agent.token)).text).not.toMatch(/pool="/);

    const own = (await send('GET', '/metrics', viewer)).text;
    expect(sample(own, 'outpost_proxy_queue_depth', { pool: POOL, status: 'queued' })).toBeGreaterThanOrEqual(1);
    expect(own).not.toContain(OTHER);
    const all = (await send('GET', '/metrics', TEST_ADMIN_TOKEN)).text;
    expect(sample(all, 'outpost_proxy_queue_depth', { pool: OTHER, status: 'queued' })).toBe(1);
    expect(all).toContain(POOL);
    // A wrong token is refused, not silently downgraded.
    expect((await send('GET', '/metrics', 'opt_wrong-wrong-wrong-wrong')).status).toBe(401);
  });

  it('the dashboard is served with a CSP that allows exactly its own script and style, and no framing', async () => {
    const a = await send('GET', '/', null);
    expect(a.status).toBe(200);
    expect(a.headers['x-frame-options']).toBe('DENY');
    expect(a.headers['referrer-policy']).toBe('no-referrer');
    expect(a.headers['x-content-type-options']).toBe('nosniff');
    const csp = String(a.headers['content-security-policy']);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    const hash = (s: string) => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;
    const script = /<script>([\s\S]*?)<\/script>/.exec(a.text)![1]!;
    const style = /<style>([\s\S]*?)<\/style>/.exec(a.text)![1]!;
    expect(csp).toContain(`script-src ${hash(script)}`);
    expect(csp).toContain(`style-src ${hash(style)}`);
    expect(a.text.match(/<script/g)).toHaveLength(1);
  });
});
