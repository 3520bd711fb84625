import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createSqlConnector } from '../../../lib/connectors/sql/index.js';
import type { Connector } from '../../../lib/connectors/types.js';
import { OutpostError } from '../../../lib/util/errors.js';
import { opContext, sqlDeps, rejection } from '../../fixtures/sql.js';
import { waitFor } from '../../fixtures/net.js';
import { nativeSuite, type NativeTarget } from './native-suite.js';

type Row = Record<string, unknown>;

/** One database the conformance suite runs against. */
/**
 * The application tables of the `queries` model, the same on every dialect;
 * each target adds its own fill of the 100 000-row `big` table.
 */
export const APP_SCHEMA: readonly string[] = [
  `create table app_users (id varchar(200) primary key, uid integer, full_name varchar(200), email varchar(200),
     active boolean not null default true, dept varchar(50))`,
  'create table app_groups (id varchar(200) primary key, title varchar(200), description varchar(200))',
  'create table app_members (user_id varchar(200), group_id varchar(200), primary key (user_id, group_id))',
  'create table big (id integer primary key, name varchar(50))',
  `insert into app_users values ('alice', 1, 'Alice A', 'alice@example.org', true, 'it'), ('bob', 2, 'Bob B', null, false, 'hr')`,
  `insert into app_groups values ('admins', null, 'all powers'), ('readers', null, null)`,
  `insert into app_members values ('alice', 'readers')`,
];

export interface SqlTarget {
  kind: 'postgres' | 'mysql' | 'sqlite' | 'mssql';
  /** `kind` and `connection` of a resource on the target's scratch database. */
  resource(): Record<string, unknown>;
  /** Runs SQL as the admin on the scratch database. */
  admin(sql: string, bindings?: unknown[]): Promise<Row[]>;
  /** Creates the app tables (app_users, app_groups, app_members, big with 100 000 rows). */
  createAppSchema(): Promise<void>;
  /** The dialect's idempotent insert of a membership (`:accountId`, `:entitlementId`). */
  grantStatement: string;
  /** A named query that sleeps 30 s on the server, and how many such queries run now. */
  sleep?: { sql: string; running(): Promise<number> };
  /** A resource config whose server refuses connections. */
  closedResource?(): Promise<Record<string, unknown>>;
  native?: NativeTarget;
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
}

/** The queries-model config over the app tables. */
export function appConfig(t: SqlTarget, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    ...t.resource(),
    model: 'queries',
    statements: {
      checkResource: 'select count(*) as n from app_users',
      listAccounts: 'select id, uid, full_name, email, active, dept from app_users order by id',
      listEntitlements: 'select id, title, description from app_groups order by id',
      listGrants: 'select user_id, group_id from app_members order by user_id, group_id',
      grant: t.grantStatement,
      revoke: 'delete from app_members where user_id = :accountId and group_id = :entitlementId',
      setAccountEnabled: 'update app_users set active = :enabled where id = :accountId and active <> :enabled',
    },
    columns: { name: 'full_name', enabled: 'active', accountId: 'user_id', entitlementId: 'group_id' },
    queries: {
      byDept: 'select id, email from app_users where dept = :dept order by id',
      usersNamed: 'select id from app_users where id = :id',
      ...(t.sleep ? { sleep: t.sleep.sql } : {}),
    },
    ...extra,
  };
}


/** The conformance suite: every operation, twice, against one real database. */
export function conformanceSuite(t: SqlTarget): void {
  beforeAll(async () => {
    await t.setup?.();
  }, 60_000);
  afterAll(async () => {
    await t.teardown?.();
  }, 60_000);

  describe(`${t.kind}: queries model`, () => {
    let c: Connector;
    const deps = sqlDeps();
    beforeAll(async () => {
      await t.createAppSchema();
      c = createSqlConnector('app', appConfig(t), deps);
    }, 120_000);
    afterAll(async () => {
      await c?.close();
    }, 60_000);

    it('checkResource answers ok with dialect and version', async () => {
      const res = await c.checkResource({}, opContext().ctx);
      expect(res.ok).toBe(true);
      expect(res.details).toMatchObject({ dialect: t.kind, model: 'queries' });
      expect(String(res.details.version)).toMatch(/\d+\.\d+/);
      expect(res.latencyMs).toBeGreaterThanOrEqual(0);
    });

    it('lists accounts, entitlements and grants through the column map', async () => {
      const a = opContext();
      expect(await c.listAccounts({}, a.ctx)).toEqual({ records: 2 });
      expect(a.records).toEqual([
        { id: 'alice', uid: '1', name: 'Alice A', email: 'alice@example.org', enabled: true, attributes: { dept: 'it' } },
        { id: 'bob', uid: '2', name: 'Bob B', email: null, enabled: false, attributes: { dept: 'hr' } },
      ]);
      const e = opContext();
      expect(await c.listEntitlements({}, e.ctx)).toEqual({ records: 2 });
      expect(e.records).toEqual([
        { id: 'admins', uid: null, name: null, kind: 'group', description: 'all powers' },
        { id: 'readers', uid: null, name: null, kind: 'group', description: null },
      ]);
      const g = opContext();
      expect(await c.listGrants({}, g.ctx)).toEqual({ records: 1 });
      expect(g.records).toEqual([{ accountId: 'alice', entitlementId: 'readers' }]);
    });

    it('grant and revoke are idempotent: the second run answers changed false', async () => {
      const p = { accountId: 'bob', entitlementId: 'admins' };
      expect(await c.grant(p, opContext().ctx)).toEqual({ changed: true });
      expect(await c.grant(p, opContext().ctx)).toEqual({ changed: false });
      const g = opContext();
      await c.listGrants({}, g.ctx);
      expect(g.records).toContainEqual({ accountId: 'bob', entitlementId: 'admins' });
      expect(await c.revoke(p, opContext().ctx)).toEqual({ changed: true });
      expect(await c.revoke(p, opContext().ctx)).toEqual({ changed: false });
      expect(await t.admin("select * from app_members where user_id = 'bob'")).toEqual([]);
    });

    it('setAccountEnabled is idempotent both ways', async () => {
      for (const enabled of [false, true]) {
        expect(await c.setAccountEnabled({ accountId: 'alice', enabled }, opContext().ctx)).toEqual({ changed: true });
        expect(await c.setAccountEnabled({ accountId: 'alice', enabled }, opContext().ctx)).toEqual({ changed: false });
        const a = opContext();
        await c.listAccounts({}, a.ctx);
        expect((a.records as Array<{ id: string; enabled: boolean }>).find((r) => r.id === 'alice')?.enabled).toBe(enabled);
      }
    });

    it('sql.query runs named queries with bound parameters, twice alike', async () => {
      for (let i = 0; i < 2; i++) {
        const q = opContext();
        expect(await c.extra['sql.query']!({ query: 'byDept', params: { dept: 'it' } }, q.ctx)).toEqual({ records: 1 });
        expect(q.records).toEqual([{ id: 'alice', email: 'alice@example.org' }]);
      }
    });

    it('refuses unknown queries and wrong parameters with non-retryable invalid_request', async () => {
      const unknown = await rejection(c.extra['sql.query']!({ query: 'dropAll' }, opContext().ctx));
      expect(unknown).toMatchObject({ code: 'invalid_request', retryable: false, message: "unknown query 'dropAll'" });
      const proto = await rejection(c.extra['sql.query']!({ query: 'constructor' }, opContext().ctx));
      expect(proto).toMatchObject({ code: 'invalid_request' });
      const missing = await rejection(c.extra['sql.query']!({ query: 'byDept' }, opContext().ctx));
      expect(missing).toMatchObject({ code: 'invalid_request', retryable: false });
      expect(missing.message).toContain('missing parameter :dept');
      const extra = await rejection(c.extra['sql.query']!({ query: 'byDept', params: { dept: 'it', limit: 5 } }, opContext().ctx));
      expect(extra.message).toContain('unexpected parameter :limit');
    });

    it('injection attempts in principal names and parameters are plain values', async () => {
      const evil = [`x"; drop table app_users; --`, `x'; drop table app_users; --`, 'x`; drop table app_users; --', `x' /* */ or '1'='1`, `\\'; drop table app_members; #`];
      for (const id of evil) {
        expect(await c.grant({ accountId: id, entitlementId: 'readers' }, opContext().ctx)).toEqual({ changed: true });
        const q = opContext();
        await c.extra['sql.query']!({ query: 'usersNamed', params: { id } }, q.ctx);
        expect(q.records).toEqual([]);
        expect(await c.revoke({ accountId: id, entitlementId: 'readers' }, opContext().ctx)).toEqual({ changed: true });
      }
      const q = opContext();
      await c.extra['sql.query']!({ query: 'byDept', params: { dept: `' or 1=1 --` } }, q.ctx);
      expect(q.records).toEqual([]);
      expect(await t.admin('select count(*) as n from app_users')).toEqual([{ n: expect.anything() }]);
      expect(Number((await t.admin('select count(*) as n from app_members'))[0]!.n)).toBe(1);
    });

    it('streams a 100 000-row listing in bounded pages', async () => {
      const big = createSqlConnector('big', appConfig(t, { statements: { listAccounts: 'select id, name from big order by id' } }), deps);
      try {
        let last = '';
        let ordered = true;
        const o = opContext({
          keep: false,
          onPage: (page) => {
            for (const r of page as Array<{ id: string }>) {
              if (last && Number(r.id) <= Number(last)) ordered = false;
              last = r.id;
            }
          },
        });
        expect(await big.listAccounts({ pageSize: 1000 }, o.ctx)).toEqual({ records: 100_000 });
        expect(o.pages).toHaveLength(100);
        expect(Math.max(...o.pages)).toBe(1000);
        expect(ordered).toBe(true);
        expect(last).toBe('100000');
      } finally {
        await big.close();
      }
    }, 60_000);

    it('stops a listing at the page boundary after an abort', async () => {
      const big = createSqlConnector('big2', appConfig(t, { statements: { listAccounts: 'select id, name from big order by id' } }), deps);
      try {
        const o = opContext({ keep: false, onPage: (_p, n) => (n === 2 ? o.controller.abort() : undefined) });
        const err = await rejection(big.listAccounts({ pageSize: 100 }, o.ctx));
        expect(err).toMatchObject({ code: 'aborted', retryable: true });
        expect(o.pages).toEqual([100, 100]);
        // The connection is usable (or replaced) afterwards.
        expect((await big.checkResource({}, opContext().ctx)).ok).toBe(true);
      } finally {
        await big.close();
      }
    });

    it('a failing writePage stops the listing with that error, and the pool serves again', async () => {
      const big = createSqlConnector('big3', appConfig(t, { statements: { listAccounts: 'select id, name from big order by id' } }), deps);
      try {
        const lost = new OutpostError('lease_lost', 'lease lost while writing a page');
        const o = opContext({ keep: false, onPage: () => Promise.reject(lost) });
        await expect(big.listAccounts({ pageSize: 500 }, o.ctx)).rejects.toBe(lost);
        expect(o.pages).toEqual([500]);
        expect((await big.checkResource({}, opContext().ctx)).ok).toBe(true);
      } finally {
        await big.close();
      }
    });

    if (t.sleep) {
      const sleep = t.sleep;
      it('an aborted long query really stops on the server', async () => {
        const o = opContext();
        const running = c.extra['sql.query']!({ query: 'sleep' }, o.ctx);
        running.catch(() => {});
        await waitFor(async () => (await sleep.running()) === 1, 10_000);
        o.controller.abort();
        const err = await rejection(running);
        expect(err).toMatchObject({ code: 'aborted', retryable: true });
        await waitFor(async () => (await sleep.running()) === 0, 5_000);
        // The pool still serves.
        expect((await c.checkResource({}, opContext().ctx)).ok).toBe(true);
      });

      it('statementTimeoutMs stops a slow statement with a retryable timeout', async () => {
        const slow = createSqlConnector('slow', appConfig(t, { statementTimeoutMs: 300 }), deps);
        try {
          const err = await rejection(slow.extra['sql.query']!({ query: 'sleep' }, opContext().ctx));
          expect(err).toMatchObject({ code: 'timeout', retryable: true });
          await waitFor(async () => (await sleep.running()) === 0, 5_000);
        } finally {
          await slow.close();
        }
      });
    }

    if (t.closedResource) {
      const closed = t.closedResource;
      it('a refused connection is a retryable unavailable', async () => {
        const down = createSqlConnector('down', { ...(await closed()), model: 'queries', statements: { listAccounts: 'select 1' } }, deps);
        try {
          const err = await rejection(down.checkResource({}, opContext().ctx));
          expect(err).toMatchObject({ code: 'unavailable', retryable: true });
        } finally {
          await down.close();
        }
      });
    }
  });

  if (t.native) nativeSuite(t.kind, t.native);
}
