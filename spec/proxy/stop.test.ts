import { describe, expect, it } from '@jest/globals';
import { Agent, request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { startTestProxy, TEST_ADMIN_TOKEN } from '../fixtures/proxy-server.js';

/**
 * Stopping the proxy while clients hold connections: a request still running
 * when stop() begins gets its answer and its keep-alive connection is closed;
 * a connection that sent nothing, or half a request, is closed after the
 * 5 s stop grace at the latest (on Node 20 stop() waited on such a connection
 * for good: a client's pooled connection, opened and never used, held a CI
 * run's proxy; Node 26 closes them itself).
 */
describe('proxy stop with keep-alive clients', () => {
  it('answers the request in flight, then closes its idle connection: stop() does not wait for the keep-alive timeout', async () => {
    const t = await startTestProxy();
    const id = await t.enqueue({ type: 'ping' });
    const agent = new Agent({ keepAlive: true });
    try {
      // A job wait held by the proxy (the job stays queued), on a keep-alive connection.
      const answered = new Promise<number>((resolve, reject) => {
        request(`${t.url}/v1/jobs/${id}?waitMs=1500`, { agent, headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        })
          .on('error', reject)
          .end();
      });
      await new Promise((r) => setTimeout(r, 200));
      const t0 = performance.now();
      await t.stop();
      const stopMs = performance.now() - t0;
      expect(await answered).toBe(200);
      // The wait's 1.5 s at most, plus slack; not the 65 s keep-alive.
      expect(stopMs).toBeLessThan(5000);
    } finally {
      agent.destroy();
    }
  }, 20_000);

  it('closes connections that sent nothing or half a request after the grace, instead of waiting on them', async () => {
    const t = await startTestProxy();
    const port = Number(new URL(t.url).port);
    const open = async (bytes: string): Promise<Socket> => {
      const s = connect(port, '127.0.0.1');
      // Closed by the proxy: a reset is the expected end here.
      s.on('error', () => undefined);
      await new Promise((r) => s.once('connect', r));
      if (bytes) s.write(bytes);
      return s;
    };
    const sockets = [await open(''), await open('GET /healthz HTTP/1.1\r\nHost: x\r\n')];
    const closed = sockets.map((s) => new Promise<void>((r) => s.once('close', () => r())));
    try {
      const t0 = performance.now();
      await t.stop();
      const stopMs = performance.now() - t0;
      await Promise.all(closed);
      // At most the 5 s grace, then every connection closed (Node 26 already closes both at close()).
      expect(stopMs).toBeLessThan(8000);
    } finally {
      for (const s of sockets) s.destroy();
    }
  }, 20_000);
});
