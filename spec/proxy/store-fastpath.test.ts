import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { openStoreKit, type StoreKit } from '../fixtures/proxy-store.js';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { atomic, run, stmt, type Db, type Stmt } from '../../lib/proxy/store/db.js';
import { SqliteConn } from '../../lib/proxy/store/sqlite.js';
import { tempDir } from '../fixtures/proxy-server.js';
import { newLeaseSecret } from '../../lib/proxy/store/rows.js';
import { Authenticator } from '../../lib/proxy/http/auth.js';
import type { TokenInfo, TokenStore } from '../../lib/proxy/store/tokens.js';
import { systemClock } from '../../lib/util/clock.js';
import { silentLogger } from '../../lib/log/index.js';
import type { FastifyRequest } from 'fastify';

/** The store's hot-path mechanisms behave the same on both dialects. */
describe.each(['sqlite', 'postgres'] as const)('store fast paths on %s', (kind) => {
  let k: StoreKit;
  beforeAll(async () => {
    k = await openStoreKit(kind);
    await run(k.db, 'CREATE TABLE fastpath_t (v TEXT NOT NULL)');
  });
  afterAll(async () => {
    await k?.close();
  });

  const values = async () => (await run<{ v: string }>(k.db, 'SELECT v FROM fastpath_t ORDER BY v')).map((r) => r.v);

  it('claimJson gives the bytes JSON.stringify gives, with the stored payload spliced in', async () => {
    const pool = `json-${kind}`;
    const payload = { filter: '(&(uid=a*)(cn=é "q" \\ ☃))', nested: { n: [1, 2.5, null, true] } };
    const made = await k.jobs.enqueue([
      { pool, type: 'listAccounts', resource: 'ad', payload, timeoutMs: 1234 },
      { pool, type: 'ping' },
    ]);
    const { refs, json } = await k.leases.claimJson(pool, 'a1', ['ad'], 5);
    const jobs = JSON.parse(json) as Array<Record<string, unknown>>;
    expect(json).toBe(JSON.stringify(jobs));
    expect(refs).toEqual(jobs.map((j) => ({ jobId: j.id, leaseToken: j.leaseToken })));
    expect(jobs).toEqual([
      { id: made[0]!.id, type: 'listAccounts', resource: 'ad', payload, attempt: 1, leaseToken: refs[0]!.leaseToken, leaseTtlMs: 10_000, timeoutMs: 1234 },
      { id: made[1]!.id, type: 'ping', resource: null, payload: {}, attempt: 1, leaseToken: refs[1]!.leaseToken, leaseTtlMs: 10_000, timeoutMs: 300_000 },
    ]);
    expect((await k.leases.claimJson(pool, 'a1', ['ad'], 5)).json).toBe('[]');
  });

  it('atomic commits a unit and rolls all of it back when a step throws', async () => {
    const unit = (fail: boolean) =>
      function* (): Generator<Stmt, number, unknown[]> {
        yield stmt('INSERT INTO fastpath_t (v) VALUES (?)', [`atomic-${fail}`]);
        const rows = yield stmt('SELECT v FROM fastpath_t WHERE v = ?', [`atomic-${fail}`]);
        if (fail) throw new Error('step failed');
        return rows.length;
      };
    expect(await atomic(k.db, unit(false))).toBe(1);
    await expect(atomic(k.db, unit(true))).rejects.toThrow('step failed');
    expect(await values()).toContain('atomic-false');
    expect(await values()).not.toContain('atomic-true');
  });
});

describe('the SQLite connection (better-sqlite3, no knex)', () => {
  let dir: { dir: string; cleanup(): void };
  let raw: Database.Database;
  let c: SqliteConn;
  let prepares = 0;
  beforeAll(() => {
    dir = tempDir();
    raw = new Database(join(dir.dir, 'conn.db'));
    const prepare = raw.prepare.bind(raw);
    raw.prepare = ((sql: string) => {
      prepares++;
      return prepare(sql);
    }) as typeof raw.prepare;
    c = new SqliteConn(raw);
    c.exec('CREATE TABLE fastpath_t (v TEXT NOT NULL)');
  });
  afterAll(() => {
    c?.close();
    dir?.cleanup();
  });

  it('prepares a statement once and reuses it', () => {
    const before = prepares;
    for (let i = 0; i < 50; i++) c.all('INSERT INTO fastpath_t (v) VALUES (?)', [`row-${i}`]);
    expect(c.all<{ n: number }>('SELECT COUNT(*) AS n FROM fastpath_t WHERE v LIKE ?', ['row-%'])).toEqual([{ n: 50 }]);
    expect(prepares - before).toBe(2);
  });

  it('a transaction rolls back when its function throws, and the connection stays usable', () => {
    expect(() =>
      c.transaction(() => {
        c.all('INSERT INTO fastpath_t (v) VALUES (?)', ['doomed']);
        throw new Error('nope');
      }),
    ).toThrow('nope');
    expect(c.all('SELECT COUNT(*) AS n FROM fastpath_t WHERE v = ?', ['doomed'])).toEqual([{ n: 0 }]);
    c.transaction(() => c.all('INSERT INTO fastpath_t (v) VALUES (?)', ['kept']));
    expect(c.all('SELECT v FROM fastpath_t WHERE v = ?', ['kept'])).toEqual([{ v: 'kept' }]);
  });

  it('through the store, a failing statement rejects (it does not throw synchronously) and leaves no transaction open', async () => {
    const db: Db = { dialect: 'sqlite', sqlite: c };
    let threw: unknown;
    const p = run(db, 'INSERT INTO no_such_table (v) VALUES (?)', ['x']).catch((err: unknown) => (threw = err));
    expect(threw).toBeUndefined();
    await p;
    expect(String((threw as Error | undefined)?.message)).toMatch(/no such table/);
    await atomic(db, function* () {
      yield stmt('INSERT INTO fastpath_t (v) VALUES (?)', ['after-error']);
    });
    expect(await run(db, 'SELECT v FROM fastpath_t WHERE v = ?', ['after-error'])).toEqual([{ v: 'after-error' }]);
  });
});

describe('lease secrets and the token memo', () => {
  it('lease secrets are 128-bit hex and never repeat across pool refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) seen.add(newLeaseSecret());
    expect(seen.size).toBe(2000);
    for (const s of seen) expect(s).toMatch(/^[0-9a-f]{32}$/);
  });

  it('remembers accepted tokens only: an unknown token is looked up (and refused) every time', async () => {
    const lookups: string[] = [];
    const good: TokenInfo = { id: 'tok_000000000001', pool: 'p1', role: 'agent', createdAt: 0, lastUsedAt: null, expiresAt: null, revokedAt: null };
    const tokens = {
      lookup: async (t: string): Promise<TokenInfo | undefined> => {
        lookups.push(t);
        return t === 'opt_goodgoodgoodgoodgood' ? good : undefined;
      },
      revision: async () => 0,
      touch: async () => {},
    } as unknown as TokenStore;
    const auth = new Authenticator({ adminToken: 'adm-secret-0123456789' }, { tokens, clock: systemClock, log: silentLogger() });
    const req = (token: string) => ({ method: 'GET', headers: { authorization: `Bearer ${token}` } }) as unknown as FastifyRequest;
    expect(await auth.agent(req('opt_goodgoodgoodgoodgood'))).toBe('p1');
    expect(await auth.agent(req('opt_goodgoodgoodgoodgood'))).toBe('p1');
    expect(lookups).toEqual(['opt_goodgoodgoodgoodgood']);
    await expect(auth.agent(req('opt_badbadbadbadbadbad'))).rejects.toMatchObject({ code: 'unauthorized' });
    await expect(auth.agent(req('opt_badbadbadbadbadbad'))).rejects.toMatchObject({ code: 'unauthorized' });
    expect(lookups.filter((t) => t === 'opt_badbadbadbadbadbad')).toHaveLength(2);
    // The admin token stays admin-only for the agent API, memo or not.
    await expect(auth.agent(req('adm-secret-0123456789'))).rejects.toMatchObject({ code: 'forbidden' });
    await expect(auth.admin(req('adm-secret-0123456789'))).resolves.toEqual({ pool: null, role: 'admin', tokenId: null });
    await expect(auth.agent(req('adm-secret-0123456789'))).rejects.toMatchObject({ code: 'forbidden' });
  });
});
