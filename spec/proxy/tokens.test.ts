import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { FastifyRequest } from 'fastify';
import { openStoreKit, type StoreKit } from '../fixtures/proxy-store.js';
import { Api, createTestDatabase, startTestProxy, testProxyConfig, type TestProxy } from '../fixtures/proxy-server.js';
import { Authenticator } from '../../lib/proxy/http/auth.js';
import { hashToken, parseExpiry } from '../../lib/proxy/store/tokens.js';
import { run } from '../../lib/proxy/store/db.js';
import { createProxyServer } from '../../lib/proxy/server.js';
import { silentLogger } from '../../lib/log/index.js';
import { FakeClock } from '../fixtures/fake-clock.js';
import { waitFor } from '../fixtures/net.js';

/** Token lifecycle: roles, expiry, revocation, last use, on both stores; revocation across PostgreSQL replicas. */
describe.each(['sqlite', 'postgres'] as const)('token lifecycle on %s', (kind) => {
  let k: StoreKit;
  let auth: Authenticator;
  beforeAll(async () => {
    k = await openStoreKit(kind);
    auth = new Authenticator({ adminToken: null }, { tokens: k.tokens, clock: k.clock, log: silentLogger() });
  });
  afterAll(async () => {
    await k?.close();
  });

  const req = (token: string, method = 'POST') => ({ method, headers: { authorization: `Bearer ${token}` } }) as unknown as FastifyRequest;
  let n = 0;
  const freshPool = () => `tok-${kind}-${++n}`;

  it('create, list and revoke: list shows id, pool, role and times, never the secret or its hash', async () => {
    const pool = freshPool();
    const a = await k.tokens.create({ pool, role: 'agent' });
    const v = await k.tokens.create({ pool, role: 'viewer', expiresAtMs: k.clock.now() + 3_600_000 });
    expect(a.id).toMatch(/^tok_[0-9a-f]{12}$/);
    const list = await k.tokens.list(pool);
    expect(list).toEqual([
      { id: a.id, pool, role: 'agent', createdAt: k.clock.now(), lastUsedAt: null, expiresAt: null, revokedAt: null },
      { id: v.id, pool, role: 'viewer', createdAt: k.clock.now(), lastUsedAt: null, expiresAt: k.clock.now() + 3_600_000, revokedAt: null },
    ].sort((x, y) => x.id.localeCompare(y.id)));
    const text = JSON.stringify(await k.tokens.list());
    for (const secret of [a.token, v.token]) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(hashToken(secret));
    }
    const before = await k.tokens.revision();
    expect(await k.tokens.revoke(a.id)).toBe('revoked');
    expect(await k.tokens.revoke(a.id)).toBe('already_revoked');
    expect(await k.tokens.revoke('tok_000000000000')).toBe('not_found');
    expect(await k.tokens.revision()).toBe(before + 1);
    expect((await k.tokens.lookup(a.token))?.revokedAt).toBe(k.clock.now());
    await expect(k.tokens.create({ pool, role: 'agent', expiresAtMs: k.clock.now() })).rejects.toMatchObject({ code: 'invalid_request' });
  });

  it('a revoked token is refused once the revision is read again (at most every 500 ms), even when cached', async () => {
    const pool = freshPool();
    const { id, token } = await k.tokens.create({ pool, role: 'agent' });
    expect(await auth.agent(req(token))).toBe(pool);
    // Revoked by "another process": nothing tells this Authenticator but the store.
    await k.tokens.revoke(id);
    expect(await auth.agent(req(token))).toBe(pool); // cached, revision not re-read yet
    await k.clock.advance(500);
    await expect(auth.agent(req(token))).rejects.toMatchObject({ code: 'unauthorized', message: 'this token was revoked' });
  });

  it('an expiring token is refused from its expiry on, cached or not', async () => {
    const pool = freshPool();
    const { token } = await k.tokens.create({ pool, role: 'agent', expiresAtMs: k.clock.now() + 10_000 });
    expect(await auth.agent(req(token))).toBe(pool);
    await k.clock.advance(9_999);
    expect(await auth.agent(req(token))).toBe(pool);
    await k.clock.advance(1);
    await expect(auth.agent(req(token))).rejects.toMatchObject({ code: 'unauthorized', message: 'this token has expired' });
    await expect(auth.agent(req(token))).rejects.toMatchObject({ code: 'unauthorized' });
  });

  it('last use is written at most once a minute per token', async () => {
    const pool = freshPool();
    const { id, token } = await k.tokens.create({ pool, role: 'admin' });
    const writes: number[] = [];
    const counted = Object.create(k.tokens) as typeof k.tokens;
    counted.touch = (tokenId: string, atMs: number) => {
      writes.push(atMs);
      return k.tokens.touch(tokenId, atMs);
    };
    const own = new Authenticator({ adminToken: null }, { tokens: counted, clock: k.clock, log: silentLogger() });
    const lastUsed = async () => (await k.tokens.list(pool)).find((x) => x.id === id)!.lastUsedAt;
    await own.admin(req(token));
    const first = k.clock.now();
    expect(writes).toEqual([first]);
    await waitFor(async () => (await lastUsed()) === first, 5000);
    for (let i = 0; i < 50; i++) {
      await own.admin(req(token, 'GET'));
      await k.clock.advance(1000); // 50 s of requests: no write
    }
    expect(writes).toEqual([first]);
    await k.clock.advance(10_000);
    await own.admin(req(token));
    expect(writes).toEqual([first, k.clock.now()]);
    await waitFor(async () => (await lastUsed()) === k.clock.now(), 5000);
  });

  it('roles: agent tokens only as agents, admin tokens never as agents, viewer tokens only to read', async () => {
    const pool = freshPool();
    const tok = async (role: 'agent' | 'admin' | 'viewer') => (await k.tokens.create({ pool, role })).token;
    const [agent, admin, viewer] = [await tok('agent'), await tok('admin'), await tok('viewer')];
    expect(await auth.agent(req(agent))).toBe(pool);
    await expect(auth.admin(req(agent, 'GET'))).rejects.toMatchObject({ code: 'forbidden' });
    await expect(auth.agent(req(admin))).rejects.toMatchObject({ code: 'forbidden' });
    await expect(auth.admin(req(admin))).resolves.toMatchObject({ pool, role: 'admin' });
    await expect(auth.agent(req(viewer))).rejects.toMatchObject({ code: 'forbidden' });
    await expect(auth.admin(req(viewer, 'GET'))).resolves.toMatchObject({ pool, role: 'viewer' });
    await expect(auth.admin(req(viewer, 'POST'))).rejects.toMatchObject({ code: 'forbidden' });
  });

  it('tokens made before roles become agent or admin with an id on migration', async () => {
    const pool = freshPool();
    await run(k.db, 'INSERT INTO outpost_tokens (hash, pool, admin, created_at) VALUES (?, ?, 1, 1), (?, ?, 0, 2)', [hashToken('opt_legacyadmin'), pool, hashToken('opt_legacyagent'), pool]);
    const { migrate } = await import('../../lib/proxy/store/schema.js');
    await migrate(k.db);
    const list = await k.tokens.list(pool);
    expect(list.map((x) => x.role)).toEqual(['admin', 'agent']);
    for (const x of list) expect(x.id).toMatch(/^tok_[0-9a-f]{12}$/);
    expect(new Set(list.map((x) => x.id)).size).toBe(2);
  });
});

describe('--expires', () => {
  const now = Date.parse('2026-12-01T00:00:00Z');
  it.each([
    ['30d', now + 30 * 86_400_000],
    ['12h', now + 12 * 3_600_000],
    ['90m', now + 90 * 60_000],
    ['2w', now + 14 * 86_400_000],
    ['2027-01-31', Date.parse('2027-01-31')],
    ['2027-01-31T18:00:00Z', Date.parse('2027-01-31T18:00:00Z')],
  ])('%s', (value, expected) => {
    expect(parseExpiry(value, now)).toBe(expected);
  });
  it.each(['soon', '-1d', '30x', '2020-01-01', '1e9s', ''])('refuses %p', (value) => {
    expect(() => parseExpiry(value, now)).toThrow(/--expires/);
  });
});

/**
 * Two replicas on one PostgreSQL database, each on a FakeClock that never
 * moves: the revision is never re-read, so only the NOTIFY sent by the
 * revoking transaction can make them refuse the token.
 */
describe('token revocation across PostgreSQL replicas', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let a: TestProxy;
  let b: TestProxy;
  beforeAll(async () => {
    db = await createTestDatabase();
    a = await startTestProxy({ store: db.url, clock: new FakeClock(), pool: 'shared' });
    b = await startTestProxy({ store: db.url, clock: new FakeClock(), pool: 'shared' });
  });
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await db?.drop();
  });

  it('a token revoked by the CLI (another process) is refused by both replicas within 1 s', async () => {
    // The CLI's path: a server object that is never started, on the same store.
    const cli = createProxyServer(testProxyConfig(db.url), { log: silentLogger() });
    const { id, token } = await cli.issueToken({ pool: 'shared', role: 'agent' });
    const onA = new Api(a.proxy.url, token);
    const onB = new Api(b.proxy.url, token);
    expect(await onA.lease()).toEqual([]);
    expect(await onB.lease()).toEqual([]);
    const viewerOnA = new Api(a.proxy.url, await cli.createToken({ pool: 'shared', role: 'viewer' }));
    expect((await viewerOnA.get('/v1/agents')).status).toBe(200);

    expect(await cli.revokeToken(id)).toBe('revoked');
    const revokedAt = Date.now();
    const refused = async (api: Api) => {
      for (;;) {
        const r = await api.post('/v1/agent/lease', { agentId: 'x', hostname: 'h', version: '0.1.0', resources: [], max: 1, waitMs: 0 });
        if (r.status === 401) return Date.now() - revokedAt;
        expect(r.status).toBe(200);
        await new Promise((r2) => setTimeout(r2, 10));
      }
    };
    const [msA, msB] = await Promise.all([refused(onA), refused(onB)]);
    expect(msA).toBeLessThan(1000);
    expect(msB).toBeLessThan(1000);
    // Other tokens are unaffected.
    expect((await viewerOnA.get('/v1/agents')).status).toBe(200);
    expect(await b.agent.lease()).toEqual([]);
    const listed = await cli.listTokens({ pool: 'shared' });
    expect(listed.find((x) => x.id === id)?.revokedAt).not.toBeNull();
    // Both replicas recorded the first use of the revoked token before it was revoked.
    expect(listed.find((x) => x.id === id)?.lastUsedAt).not.toBeNull();
    await cli.stop();
  });
});
