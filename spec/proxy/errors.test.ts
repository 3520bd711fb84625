import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Api, createTestDatabase, startTestProxy, tempDir, TEST_ADMIN_TOKEN, type TestProxy } from '../fixtures/proxy-server.js';
import { jsonDepthExceeds, scanJson } from '../../lib/proxy/http/json-body.js';
import { createLogger } from '../../lib/log/index.js';
import { RawClient } from '../fixtures/raw-http.js';

/** Bad input never crashes the proxy, gets the right code and status, changes nothing, and never echoes a secret. */
describe('proxy errors and secrets', () => {
  const tmp = tempDir();
  const logLines: string[] = [];
  let t: TestProxy;
  let jobId: string;
  let leaseToken: string;

  beforeAll(async () => {
    const stream = new PassThrough();
    stream.on('data', (d: Buffer) => logLines.push(d.toString('utf8')));
    const log = createLogger({ level: 'debug', stream });
    t = await startTestProxy({ store: 'sqlite:' + join(tmp.dir, 'proxy.db'), overrides: { bodyLimitBytes: 64 * 1024, leaseTtlMs: 600_000 }, log });
    jobId = await t.admin.enqueue({ type: 'ping' });
    [{ leaseToken }] = await t.agent.lease();
  });
  afterAll(async () => {
    await t.stop();
    tmp.cleanup();
  });

  async function unchanged(): Promise<void> {
    const job = (await t.admin.get(`/v1/jobs/${jobId}`)).body;
    expect(job).toMatchObject({ status: 'leased', attempt: 1, result: null, error: null, outputRecords: 0 });
    expect((await t.admin.get('/v1/jobs')).body.jobs.length).toBe(1);
  }

  const lease = { agentId: 'a1', hostname: 'h', version: '1', resources: [], max: 1, waitMs: 0 };
  const cases: Array<[string, number, string, string, () => Promise<{ status: number; body: any }>]> = [
    ['malformed JSON', 400, 'invalid_request', 'malformed JSON', () => t.agent.post('/v1/agent/lease', undefined, { raw: '{"agentId": "a1",' })],
    ['a body that is not an object', 400, 'invalid_request', 'body', () => t.agent.post('/v1/agent/results', [1, 2])],
    ['a wrong type', 400, 'invalid_request', 'body.max', () => t.agent.post('/v1/agent/lease', { ...lease, max: 'ten' })],
    ['a number out of range', 400, 'invalid_request', 'body.max', () => t.agent.post('/v1/agent/lease', { ...lease, max: 0 })],
    ['a missing field', 400, 'invalid_request', 'body.leases', () => t.agent.post('/v1/agent/heartbeat', { agentId: 'a1' })],
    ['an unknown field', 400, 'invalid_request', 'body.priority', () => t.agent.post('/v1/agent/lease', { ...lease, priority: 9 })],
    ['an unknown nested field', 400, 'invalid_request', 'body.results', () => t.agent.post('/v1/agent/results', { agentId: 'a1', results: [{ jobId, leaseToken, outcome: 'succeeded', result: 1, extra: 1 }] })],
    ['an unknown field on enqueue', 400, 'invalid_request', 'body.colour', () => t.admin.post('/v1/jobs', { type: 'ping', colour: 'red' })],
    ['an empty batch', 400, 'invalid_request', 'body.jobs', () => t.admin.post('/v1/jobs/batch', { jobs: [] })],
    ['a batch over 1 000', 400, 'invalid_request', 'body.jobs', () => t.admin.post('/v1/jobs/batch', { jobs: Array.from({ length: 1001 }, () => ({ type: 'p' })) })],
    ['an oversized body', 413, 'too_large', '', () => t.agent.post(`/v1/agent/jobs/${jobId}/output`, { leaseToken, seq: 0, records: ['x'.repeat(70 * 1024)] })],
    ['a wrong content type', 400, 'invalid_request', '', () => t.agent.post('/v1/agent/lease', undefined, { raw: 'agentId=a1', headers: { 'content-type': 'application/x-www-form-urlencoded' } })],
    ['an unknown job', 404, 'not_found', '', () => t.admin.get('/v1/jobs/no-such-job')],
    ['an unknown job on output', 404, 'not_found', '', () => t.agent.post('/v1/agent/jobs/no-such-job/output', { leaseToken, seq: 0, records: [] })],
    ['an unknown job on cancel', 404, 'not_found', '', () => t.admin.post('/v1/jobs/no-such-job/cancel')],
    ['an unknown route', 404, 'not_found', '', () => t.admin.get('/v1/nothing')],
    ['a bad waitMs', 400, 'invalid_request', 'waitMs', () => t.admin.get(`/v1/jobs/${jobId}?waitMs=soon`)],
    ['a bad status filter', 400, 'invalid_request', 'status', () => t.admin.get('/v1/jobs?status=done')],
    ['no token', 401, 'unauthorized', '', () => t.agent.as('').call('POST', '/v1/agent/lease', lease, { headers: { authorization: '' } })],
    ['an unknown token', 401, 'unauthorized', '', () => t.agent.as('opt_not-a-real-token').post('/v1/agent/lease', lease)],
    ['an agent token on the job side', 403, 'forbidden', '', () => t.agent.post('/v1/jobs', { type: 'ping' })],
    // Issue 10: bad input is a 4xx in the protocol's shape, never a 500 or fastify's own body.
    ['a repeated query parameter', 400, 'invalid_request', 'querystring.pool', () => t.agent.as(TEST_ADMIN_TOKEN).get('/v1/jobs?pool=A&pool=B')],
    ['a repeated query parameter on agents', 400, 'invalid_request', 'querystring.pool', () => t.agent.as(TEST_ADMIN_TOKEN).get('/v1/agents?pool=p1&pool=p1')],
    ['a job id of 101–128 characters', 404, 'not_found', '', () => t.admin.get(`/v1/jobs/${'j'.repeat(128)}`)],
    ['a job id over 128 characters', 400, 'invalid_request', 'path', () => raw('GET', `/v1/jobs/${'j'.repeat(129)}`)],
    ['a malformed URL', 400, 'invalid_request', 'path', () => raw('GET', '/%')],
    ['bad percent-encoding in an id', 400, 'invalid_request', 'path', () => raw('GET', '/v1/jobs/%C3%28')],
    ['an unknown method on a route', 404, 'not_found', '', () => raw('DELETE', '/v1/jobs')],
    ['a method Node does not know', 400, 'invalid_request', 'malformed', () => raw('FOO', '/v1/jobs')],
    ['a result nested 4 150 levels deep', 400, 'invalid_request', 'nested deeper than 64', () =>
      t.agent.post('/v1/agent/results', undefined, { raw: `{"agentId":"a1","results":[{"jobId":"${jobId}","leaseToken":"${leaseToken}","outcome":"succeeded","result":${'['.repeat(4150)}${']'.repeat(4150)}}]}` })],
    ['a __proto__ key', 400, 'invalid_request', '__proto__', () => t.admin.post('/v1/jobs', undefined, { raw: '{"type":"ping","payload":{"__proto__":{"admin":true}}}' })],
    ['an escaped __proto__ key', 400, 'invalid_request', '__proto__', () => t.admin.post('/v1/jobs', undefined, { raw: '{"type":"ping","payload":{"\\u005f_pro\\u0074o__":{"admin":true}}}' })],
    ['a constructor.prototype key', 400, 'invalid_request', '__proto__', () => t.admin.post('/v1/jobs', undefined, { raw: '{"type":"ping","payload":{"constructor":{"prototype":{"admin":true}}}}' })],
    ['a text/plain body', 400, 'invalid_request', 'content-type', () => t.admin.post('/v1/jobs', undefined, { raw: 'type=ping', headers: { 'content-type': 'text/plain' } })],
    ['headers too large', 431, 'too_large', 'headers', () => raw('GET', '/v1/jobs', { 'x-big': 'a'.repeat(20_000) })],
  ];

  /** A request as written (fetch would normalise the path), with the admin token. */
  async function raw(method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
    const c = new RawClient(t.proxy.url, 1);
    try {
      const a = await c.send({ method, path, headers: { authorization: `Bearer ${t.admin.token}`, ...headers } });
      expect(a.contentType).toMatch(/^application\/json/);
      return { status: a.status, body: JSON.parse(a.text) };
    } finally {
      c.close();
    }
  }

  it.each(cases)('%s → %d %s, nothing changed', async (_name, status, code, mentions, call) => {
    const r = await call();
    expect(r.status).toBe(status);
    expect(r.body).toEqual({ error: { code, message: expect.any(String) } });
    if (mentions) expect(r.body.error.message).toContain(mentions);
    await unchanged();
  });

  it('a 1 000-job batch with one bad item is rejected whole', async () => {
    const jobs: unknown[] = Array.from({ length: 999 }, () => ({ type: 'ping' }));
    jobs.push({ type: 'ping', maxAttempts: -1 });
    const r = await t.admin.post('/v1/jobs/batch', { jobs });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toContain('body.jobs.999.maxAttempts');
    await unchanged();
  });

  it('never echoes a token or a body in an error, nor logs one', async () => {
    const agentToken = t.agent.token;
    const adminToken = t.admin.token;
    const bodies = [
      await t.agent.post('/v1/agent/lease', undefined, { raw: `{"agentId": "${agentToken}" "x"` }),
      await t.agent.post('/v1/agent/lease', { ...lease, agentId: agentToken, hostname: adminToken }),
      await t.agent.as(agentToken + 'x').post('/v1/agent/lease', lease),
      await t.agent.as(TEST_ADMIN_TOKEN + 'x').get('/v1/jobs'),
      await t.admin.post('/v1/jobs', { type: 'ping', payload: { password: TEST_ADMIN_TOKEN }, [adminToken]: 1 }),
      await t.agent.post('/v1/agent/results', { agentId: 'a1', results: [{ jobId, leaseToken, outcome: 'failed', error: { code: agentToken, message: adminToken, retryable: 'yes' } }] }),
    ];
    // The proxy still serves after all of that.
    expect((await t.admin.get('/healthz')).status).toBe(200);
    const everything = bodies.map((b) => b.text).join('\n') + logLines.join('');
    for (const secret of [agentToken, adminToken, TEST_ADMIN_TOKEN, leaseToken]) expect(everything).not.toContain(secret);
    expect(bodies.map((b) => b.status)).toEqual([400, 200, 401, 401, 400, 400]);
    await unchanged();
  });

  it('a bad URL answered before its body is read closes the connection, and the next request gets a fresh one', async () => {
    const c = new RawClient(t.proxy.url, 1);
    try {
      const a = await c.send({ method: 'GET', path: '/v1/jobs%zz', headers: { authorization: `Bearer ${t.admin.token}` }, body: '{"a":1}', chunked: true });
      expect(a.status).toBe(400);
      expect(a.headers.connection).toBe('close');
      expect((await c.send({ method: 'GET', path: '/healthz' })).status).toBe(200);
    } finally {
      c.close();
    }
  });

  it('a request never crashes the proxy: raw garbage on the socket', async () => {
    const { connect } = await import('node:net');
    const url = new URL(t.proxy.url);
    await new Promise<void>((resolve) => {
      const s = connect(Number(url.port), url.hostname, () => s.end('GARBAGE / HTTP/9.9\r\n\r\n\u0000\u0001'));
      s.on('close', () => resolve());
      s.on('error', () => resolve());
      s.resume();
    });
    expect((await new Api(t.proxy.url, '').get('/healthz')).status).toBe(200);
  });
});

/** The store may refuse what the schema lets through (PostgreSQL: NUL in text, integers beyond a column): 400, not 500. */
describe('proxy errors on PostgreSQL', () => {
  let t: TestProxy;
  let drop: () => Promise<void>;

  beforeAll(async () => {
    const db = await createTestDatabase();
    drop = () => db.drop();
    t = await startTestProxy({ store: db.url, overrides: { leaseTtlMs: 600_000 } });
  });
  afterAll(async () => {
    await t.stop();
    await drop();
  });

  it('a NUL character or an out-of-range number is a 400 naming no value, and nothing is stored', async () => {
    const jobId = await t.admin.enqueue({ type: 'ping' });
    const [{ leaseToken }] = await t.agent.lease({ agentId: 'agent-1' });
    const answers = [
      await t.agent.post('/v1/agent/lease', { agentId: 'a2', hostname: 'h\u0000', version: '1', resources: [], max: 1, waitMs: 0 }),
      await t.agent.post(`/v1/agent/jobs/${jobId}/output`, { leaseToken, seq: 1e21, records: [] }),
      await t.admin.get('/v1/jobs/x%00y'),
    ];
    for (const a of answers) {
      expect(a.status).toBeGreaterThanOrEqual(400);
      expect(a.status).toBeLessThan(500);
      expect(a.body).toEqual({ error: { code: expect.any(String), message: expect.any(String) } });
    }
    expect(answers.map((a) => a.status)).toEqual([400, 400, expect.any(Number)]);
    expect((await t.admin.get('/v1/agents')).body.map((a: { agentId: string }) => a.agentId)).toEqual(['agent-1']);
    expect((await t.admin.get(`/v1/jobs/${jobId}`)).body).toMatchObject({ status: 'leased', outputRecords: 0 });
  });
});

describe('jsonDepthExceeds', () => {
  it('counts arrays and objects, not brackets inside strings or after escaped quotes', () => {
    expect(jsonDepthExceeds('[[[]]]', 3)).toBe(false);
    expect(jsonDepthExceeds('[[[[]]]]', 3)).toBe(true);
    expect(jsonDepthExceeds('{"a":{"b":{"c":{}}}}', 3)).toBe(true);
    expect(jsonDepthExceeds(`["${'['.repeat(100)}"]`, 2)).toBe(false);
    expect(jsonDepthExceeds(`["a\\"[[[", "\\\\", [[]]]`, 3)).toBe(false);
    expect(jsonDepthExceeds(`["a\\\\"[[["]`, 3)).toBe(true);
    expect(jsonDepthExceeds('"unterminated [[[[', 1)).toBe(false);
  });

  it('flags strings that may spell a prototype key, plainly or escaped, and no others', () => {
    expect(scanJson('{"__proto__":1}', 64)).toBe('suspect_key');
    expect(scanJson('{"a":{"constructor":{"prototype":1}}}', 64)).toBe('suspect_key');
    expect(scanJson('{"\\u005f_proto__":1}', 64)).toBe('suspect_key');
    expect(scanJson('{"records":[{"id":"__proto","name":"constructors","x":"a\\nb"}]}', 64)).toBe('ok');
  });

  it('refuses 4 MiB of nesting and scans 4 MiB of strings full of backslashes and quotes in one pass', () => {
    expect(jsonDepthExceeds('['.repeat(4 * 1024 * 1024), 64)).toBe(true);
    expect(jsonDepthExceeds(`["${'\\\\\\"['.repeat(1024 * 1024)}"]`, 64)).toBe(false);
  });
});
