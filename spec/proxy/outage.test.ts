import { describe, it, expect, afterAll } from '@jest/globals';
import { request } from 'node:https';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { makeTestPki } from '../fixtures/tls.js';
import { createTestDatabase, startTestProxy, tempDir, TEST_ADMIN_TOKEN } from '../fixtures/proxy-server.js';
import { createLogger } from '../../lib/log/index.js';

/** HTTPS when configured, and a store that goes away. */
describe('proxy over TLS and without its store', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());

  it('serves HTTPS with the configured certificate', async () => {
    const pki = makeTestPki(['DNS:localhost', 'IP:127.0.0.1'], join(tmp.dir));
    const t = await startTestProxy({ store: 'sqlite:' + join(tmp.dir, 'tls.db'), overrides: { tls: { certFile: pki.certFile, keyFile: pki.keyFile } } });
    try {
      expect(t.proxy.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const body = await new Promise<string>((resolve, reject) => {
        const req = request(`${t.proxy.url}/v1/jobs`, { method: 'GET', ca: pki.caCert, headers: { authorization: `Bearer ${t.admin.token}` } }, (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve(`${res.statusCode} ${text}`));
        });
        req.on('error', reject);
        req.end();
      });
      expect(body).toBe('200 {"jobs":[],"nextCursor":null}');
      // A client that does not trust the CA is refused by TLS, not served.
      await expect(fetch(`${t.proxy.url}/healthz`)).rejects.toThrow();
    } finally {
      await t.stop();
    }
  });

  it('answers 503 unavailable (not a crash, not a secret) while PostgreSQL is gone', async () => {
    const db = await createTestDatabase();
    const lines: string[] = [];
    const stream = new PassThrough();
    stream.on('data', (d: Buffer) => lines.push(d.toString()));
    const t = await startTestProxy({ store: db.url, overrides: { leaseTtlMs: 600_000 }, log: createLogger({ level: 'debug', stream }) });
    try {
      await t.admin.enqueue({ type: 'ping' });
      await db.drop();
      const ready = await t.admin.get('/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body.error.code).toBe('unavailable');
      expect(ready.headers.get('retry-after')).not.toBeNull();
      const enq = await t.admin.post('/v1/jobs', { type: 'ping' });
      expect(enq.status).toBe(503);
      expect(enq.body).toEqual({ error: { code: 'unavailable', message: 'the job store is unavailable' } });
      const lease = await t.agent.post('/v1/agent/lease', { agentId: 'a', hostname: 'h', version: '1', resources: [], max: 1, waitMs: 0 });
      expect(lease.status).toBe(503);
      expect((await t.admin.get('/healthz')).status).toBe(200);
      const all = lines.join('') + enq.text + lease.text;
      for (const secret of [t.agent.token, t.admin.token, TEST_ADMIN_TOKEN]) expect(all).not.toContain(secret);
    } finally {
      await t.stop();
    }
  });
});
