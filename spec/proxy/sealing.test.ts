import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { openStoreKit, KIT_LEASE_TTL_MS, type StoreKit } from '../fixtures/proxy-store.js';
import { Api, createTestDatabase, startTestProxy, TEST_ADMIN_TOKEN, tempDir, type TestProxy } from '../fixtures/proxy-server.js';
import { run } from '../../lib/proxy/store/db.js';

/**
 * Secrets in payloads, proxy side: secret fields leave the stored payload in
 * the statement that ends the job (every terminal path, both dialects), and
 * the pool key endpoints obey the role matrix.
 */
const SEALED = { sealed: 'c2VhbGVkLWJveC1ieXRlcy1mb3ItdGVzdGluZy1vbmx5LTAxMjM0NTY3ODlhYmNkZWZnaGlqa2xtbm9w' };
const PLAIN = 'plain-Pa55word-in-payload';

describe.each(['sqlite', 'postgres'] as const)('secret fields are wiped when a job ends, on %s', (kind) => {
  let k: StoreKit;
  let n = 0;
  const fresh = () => `seal-${kind}-${++n}`;
  beforeAll(async () => {
    k = await openStoreKit(kind);
  });
  afterAll(async () => {
    await k?.close();
  });

  async function payloadOf(id: string): Promise<Record<string, unknown>> {
    const [row] = await run<{ payload: string }>(k.db, 'SELECT payload FROM outpost_jobs WHERE id = ?', [id]);
    return JSON.parse(row!.payload) as Record<string, unknown>;
  }
  async function everyRowText(): Promise<string> {
    return JSON.stringify(await run(k.db, 'SELECT * FROM outpost_jobs'));
  }
  const setPassword = (pool: string, password: unknown, extra: Record<string, unknown> = {}) => ({
    pool, type: 'setPassword', resource: 'db', payload: { accountId: 'alice', password, mustChange: true }, ...extra,
  });

  it('succeeded: the lease carries the sealed value while live; the row loses it in the result statement', async () => {
    const pool = fresh();
    const [job, other] = await k.jobs.enqueue([
      setPassword(pool, SEALED),
      { pool, type: 'createAccount', resource: 'db', payload: { account: { name: 'bob' }, password: PLAIN } },
    ]);
    const leased = await k.leases.claim(pool, 'a1', ['db'], 2);
    expect(leased.find((j) => j.id === job!.id)!.payload).toEqual({ accountId: 'alice', password: SEALED, mustChange: true });
    expect((await k.leases.claimJson(pool, 'a1', ['db'], 1)).json).not.toContain('password');
    const results = leased.map((l) => ({ jobId: l.id, leaseToken: l.leaseToken, outcome: 'succeeded' as const, result: { changed: true } }));
    expect((await k.leases.results(pool, results)).map((r) => r.status)).toEqual(['accepted', 'accepted']);
    expect(await payloadOf(job!.id)).toEqual({ accountId: 'alice', mustChange: true });
    expect(await payloadOf(other!.id)).toEqual({ account: { name: 'bob' } });
    const rows = await everyRowText();
    expect(rows).not.toContain(SEALED.sealed);
    expect(rows).not.toContain(PLAIN);
  });

  it('failed with no attempt left wipes; a retry keeps the value for the next attempt, the last failure wipes', async () => {
    const pool = fresh();
    const [a, b] = await k.jobs.enqueue([setPassword(pool, SEALED, { maxAttempts: 1 }), setPassword(pool, PLAIN, { maxAttempts: 2 })]);
    let leased = await k.leases.claim(pool, 'a1', ['db'], 2);
    const err = (retryable: boolean) => ({ code: 'unavailable', message: 'down', retryable });
    await k.leases.results(pool, leased.map((l) => ({ jobId: l.id, leaseToken: l.leaseToken, outcome: 'failed' as const, error: err(true) })));
    expect(await payloadOf(a!.id)).toEqual({ accountId: 'alice', mustChange: true });
    expect((await payloadOf(b!.id)).password).toBe(PLAIN); // queued again: still needed
    await k.clock.advance(60_000);
    leased = await k.leases.claim(pool, 'a1', ['db'], 2);
    expect(leased.map((l) => l.id)).toEqual([b!.id]);
    await k.leases.results(pool, [{ jobId: b!.id, leaseToken: leased[0]!.leaseToken, outcome: 'failed', error: err(true) }]);
    expect(await payloadOf(b!.id)).toEqual({ accountId: 'alice', mustChange: true });
    expect((await k.jobs.get(b!.id))!.status).toBe('failed');
  });

  it('cancelled (queued and leased), expired and lease lost for good all wipe; other types are untouched', async () => {
    const pool = fresh();
    const [queued, leasedJob, expiring, reaped, ping] = await k.jobs.enqueue([
      setPassword(pool, SEALED),
      { ...setPassword(pool, SEALED), resource: 'db2' },
      { ...setPassword(pool, PLAIN), resource: 'db3', queueTimeoutMs: 1000 },
      { ...setPassword(pool, SEALED, { maxAttempts: 1 }), resource: 'db4' },
      { pool, type: 'ping', payload: { delayMs: 5 } },
    ]);
    await k.jobs.cancel(queued!.id);
    const [l2] = await k.leases.claim(pool, 'a1', ['db2'], 1);
    expect(l2!.id).toBe(leasedJob!.id);
    await k.jobs.cancel(leasedJob!.id);
    const [l4] = await k.leases.claim(pool, 'a1', ['db4'], 1);
    expect(l4!.id).toBe(reaped!.id);
    await k.clock.advance(Math.max(1001, KIT_LEASE_TTL_MS + 1));
    expect(await k.jobs.expireQueued(100)).toContain(expiring!.id);
    expect(await k.leases.reap()).toBeGreaterThanOrEqual(1);
    for (const id of [queued!.id, leasedJob!.id, expiring!.id, reaped!.id]) {
      expect(await payloadOf(id)).toEqual({ accountId: 'alice', mustChange: true });
    }
    expect((await k.jobs.get(reaped!.id))!.status).toBe('failed');
    expect((await k.jobs.get(expiring!.id))!.error?.code).toBe('expired');
    expect(await payloadOf(ping!.id)).toEqual({ delayMs: 5 });
    const rows = await everyRowText();
    expect(rows).not.toContain(SEALED.sealed);
    expect(rows).not.toContain(PLAIN);
  });
});

describe('pool key endpoints: role matrix (SQLite)', () => {
  let t: TestProxy;
  let tmp: ReturnType<typeof tempDir>;
  let viewer: Api;
  let otherAdmin: Api;
  let globalAdmin: Api;
  const KEY = Buffer.alloc(32, 7).toString('base64');
  const KEY2 = Buffer.alloc(32, 9).toString('base64');
  beforeAll(async () => {
    tmp = tempDir();
    t = await startTestProxy({ store: `sqlite:${tmp.dir}/proxy.db` });
    viewer = t.admin.as(await t.proxy.createToken({ pool: t.pool, role: 'viewer' }));
    otherAdmin = t.admin.as(await t.proxy.createToken({ pool: 'other', role: 'admin' }));
    globalAdmin = t.admin.as(TEST_ADMIN_TOKEN);
  });
  afterAll(async () => {
    await t?.stop();
    tmp?.cleanup();
  });
  const path = () => `/v1/pools/${t.pool}/key`;

  it('no key yet: 404 to a reader; a bad key is 400 naming the field; nothing stored', async () => {
    const r = await viewer.get(path());
    expect([r.status, r.body.error.code]).toEqual([404, 'not_found']);
    for (const bad of ['AAAA', `${KEY.slice(0, -1)}!`, KEY + KEY]) {
      const p = await t.admin.call('PUT', path(), { publicKey: bad });
      expect(p.status).toBe(400);
      expect(p.body.error.message).toMatch(/publicKey/);
      expect(p.text).not.toContain(bad);
    }
    expect((await viewer.get(path())).status).toBe(404);
  });

  it('admin of the pool and the configured admin set it; viewer and admin read it; agent, viewer and other pools cannot set or read', async () => {
    const set = await t.admin.call('PUT', path(), { publicKey: KEY });
    expect(set.status).toBe(200);
    expect(set.body).toMatchObject({ pool: t.pool, publicKey: KEY, algorithm: 'x25519-xsalsa20-poly1305-sealedbox' });
    for (const reader of [viewer, t.admin, globalAdmin]) {
      const r = await reader.get(path());
      expect(r.status).toBe(200);
      expect(r.body).toEqual({ pool: t.pool, publicKey: KEY, algorithm: 'x25519-xsalsa20-poly1305-sealedbox', updatedAt: expect.any(String) });
    }
    const refused: Array<[Api, string, number]> = [
      [t.agent, 'PUT', 403],
      [t.agent, 'GET', 403],
      [viewer, 'PUT', 403],
      [otherAdmin, 'PUT', 403],
      [otherAdmin, 'GET', 404], // as a job of another pool: no pool names leak
      [t.admin.as('no-such-token-0123456789'), 'PUT', 401],
      [t.admin.as('no-such-token-0123456789'), 'GET', 401],
    ];
    for (const [who, method, status] of refused) {
      const r = await who.call(method, path(), method === 'PUT' ? { publicKey: KEY2 } : undefined);
      expect([method, r.status]).toEqual([method, status]);
    }
    const none = await fetch(t.proxy.url + path());
    expect(none.status).toBe(401);
    expect((await viewer.get(path())).body.publicKey).toBe(KEY);
    const byGlobal = await globalAdmin.call('PUT', path(), { publicKey: KEY2 });
    expect(byGlobal.status).toBe(200);
    expect((await viewer.get(path())).body.publicKey).toBe(KEY2);
    expect((await t.proxy.setPoolKey(t.pool, KEY)).publicKey).toBe(KEY);
    expect((await viewer.get(path())).body.publicKey).toBe(KEY);
  });

  it('is in the OpenAPI document', async () => {
    const doc = (await fetch(`${t.proxy.url}/openapi.json`).then((r) => r.json())) as { paths: Record<string, Record<string, unknown>>; components: { schemas: Record<string, unknown> } };
    expect(Object.keys(doc.paths['/v1/pools/{pool}/key']!)).toEqual(expect.arrayContaining(['get', 'put']));
    expect(doc.components.schemas.PoolKeyView).toBeDefined();
  });
});

describe('pool keys on PostgreSQL', () => {
  it('set and read through the store', async () => {
    const db = await createTestDatabase();
    const t = await startTestProxy({ store: db.url });
    try {
      const KEY = Buffer.alloc(32, 3).toString('base64');
      expect((await t.admin.call('PUT', `/v1/pools/${t.pool}/key`, { publicKey: KEY })).status).toBe(200);
      expect((await t.admin.get(`/v1/pools/${t.pool}/key`)).body.publicKey).toBe(KEY);
      expect((await t.agent.get(`/v1/pools/${t.pool}/key`)).status).toBe(403);
    } finally {
      await t.stop();
      await db.drop();
    }
  });
});
