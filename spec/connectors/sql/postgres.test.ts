import { describe, expect, it } from '@jest/globals';
import { createSqlConnector } from '../../../lib/connectors/sql/index.js';
import { waitFor } from '../../fixtures/net.js';
import { CLOSED_PORT, opContext, scratchPostgres, sqlDeps, uniquePrefix, type ScratchDatabase } from '../../fixtures/sql.js';
import { APP_SCHEMA, conformanceSuite, type SqlTarget } from './conformance.js';

const PG_URL = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
let db: ScratchDatabase;
const rows = async (sql: string, bindings: unknown[] = []) => (await db.admin.raw(sql, bindings as never)).rows as Record<string, unknown>[];
const q = (name: string) => `"${name.replace(/"/g, '""')}"`;

const target: SqlTarget = {
  kind: 'postgres',
  async setup() {
    db = await scratchPostgres(PG_URL);
  },
  async teardown() {
    await db.drop();
  },
  resource: () => ({ kind: 'postgres', connection: { url: db.url } }),
  admin: rows,
  async createAppSchema() {
    for (const sql of APP_SCHEMA) await db.admin.raw(sql);
    await db.admin.raw(`insert into big select g, 'row ' || g from generate_series(1, 100000) g`);
  },
  grantStatement: 'insert into app_members (user_id, group_id) values (:accountId, :entitlementId) on conflict do nothing',
  sleep: {
    sql: 'select pg_sleep(30) as slept',
    // Parameterless statements run as `copy (…) to stdout`: match the statement inside.
    running: async () =>
      Number((await rows(`select count(*) as n from pg_stat_activity where state = 'active' and query like '%select pg_sleep(30) as slept%' and query not like '%outpost_columns%' and pid <> pg_backend_pid()`))[0]!.n),
  },
  closedResource: async () => ({ kind: 'postgres', connection: { host: '127.0.0.1', port: CLOSED_PORT, user: 'x', database: 'x' }, connectTimeoutMs: 2000 }),
  native: {
    resource: () => ({ kind: 'postgres', connection: { url: db.url } }),
    async create(prefix) {
      const p = { account: `${prefix}_alice`, role: `${prefix}_readers`, oddRole: `${prefix}_o"k.r\`x [y]` };
      await rows(`create role ${q(p.account)} login`);
      await rows(`create role ${q(p.role)} nologin`);
      await rows(`create role ${q(p.oddRole)} nologin`);
      return p;
    },
    exists: async (name) => (await rows('select 1 from pg_roles where rolname = ?', [name])).length === 1,
    async drop(prefix) {
      for (const r of await rows(`select rolname from pg_roles where starts_with(rolname, ?)`, [prefix])) await rows(`drop role if exists ${q(String(r.rolname))}`);
    },
  },
};

conformanceSuite(target);

describe('postgres: pool, TLS and cancellation edges', () => {
  const sleepy = (extra: Record<string, unknown> = {}) =>
    createSqlConnector('edge', { kind: 'postgres', connection: { url: db.url }, queries: { sleep: target.sleep!.sql, one: 'select 1 as one' }, ...extra }, sqlDeps());

  it('cancels a statement even when the pool is full, and the pool serves again', async () => {
    const c = sleepy({ pool: { max: 1 } });
    try {
      const o = opContext();
      const running = c.extra['sql.query']!({ query: 'sleep' }, o.ctx);
      running.catch(() => {});
      // A parameterless statement is listed through COPY.
      await waitFor(async () => (await rows(`select count(*)::int as n from pg_stat_activity where state = 'active' and query like 'copy (select pg_sleep(30) as slept%'`))[0]!.n === 1, 10_000);
      o.controller.abort();
      await expect(running).rejects.toMatchObject({ code: 'aborted' });
      await waitFor(async () => (await target.sleep!.running()) === 0, 5_000);
      const q = opContext();
      await c.extra['sql.query']!({ query: 'one' }, q.ctx);
      expect(q.records).toEqual([{ one: 1 }]);
    } finally {
      await c.close();
    }
  });

  it('a job waiting for a pooled connection is busy (retryable) after acquireTimeoutMs, or aborted at once', async () => {
    const c = sleepy({ pool: { max: 1, acquireTimeoutMs: 200 } });
    const holder = opContext();
    const running = c.extra['sql.query']!({ query: 'sleep' }, holder.ctx);
    running.catch(() => {});
    try {
      await waitFor(async () => (await target.sleep!.running()) === 1, 10_000);
      await expect(c.checkResource({}, opContext().ctx)).rejects.toMatchObject({ code: 'busy', retryable: true });
      const waiting = opContext();
      const queued = c.checkResource({}, waiting.ctx);
      waiting.controller.abort();
      await expect(queued).rejects.toMatchObject({ code: 'aborted', retryable: true });
    } finally {
      holder.controller.abort();
      await running.catch(() => {});
      await c.close();
    }
  });

  it('TLS asked of a server without it is a tls_error; an unreadable caFile is a config_error', async () => {
    const c = sleepy({ tls: { rejectUnauthorized: true } });
    try {
      await expect(c.checkResource({}, opContext().ctx)).rejects.toMatchObject({ code: 'tls_error', retryable: false });
    } finally {
      await c.close();
    }
    expect(() => sleepy({ tls: { caFile: '/nonexistent/ca.pem' } })).toThrow(
      expect.objectContaining({ code: 'config_error', message: 'resources.edge.tls.caFile: cannot read /nonexistent/ca.pem: ENOENT' }),
    );
  });

  it('a role without the privilege gets permission_denied from GRANT', async () => {
    const weak = `${uniquePrefix()}_weak`;
    const group = `${weak}_grp`;
    await rows(`create role ${q(weak)} login`);
    await rows(`create role ${q(group)} nologin`);
    const u = new URL(db.url);
    u.username = weak;
    const c = createSqlConnector('weak', { kind: 'postgres', connection: { url: u.toString() } }, sqlDeps());
    try {
      await expect(c.grant({ accountId: weak, entitlementId: group }, opContext().ctx)).rejects.toMatchObject({ code: 'permission_denied', retryable: false });
      // Another login role: its own role is refused by the connector before the server is asked (lifecycle-postgres.test.ts).
      await rows(`create role ${q(`${weak}_other`)} login`);
      await expect(c.setAccountEnabled({ accountId: `${weak}_other`, enabled: false }, opContext().ctx)).rejects.toMatchObject({ code: 'permission_denied' });
      await expect(c.setAccountEnabled({ accountId: weak, enabled: false }, opContext().ctx)).rejects.toMatchObject({ code: 'forbidden' });
    } finally {
      await c.close();
      await rows(`drop role if exists ${q(`${weak}_other`)}`);
      await rows(`drop role ${q(group)}`);
      await rows(`drop role ${q(weak)}`);
    }
  });

  it('COPY (parameterless) and cursor (bound values) listings give identical records', async () => {
    await rows(`create table odd_values (id integer primary key, t text, b bytea, ts timestamptz, n numeric, j jsonb, a text[], f boolean, big bigint)`);
    await rows(`insert into odd_values values
      (1, null, '\\x00ff10', '2026-01-02 03:04:05+00', 12345678901234567890.5, '{"k": [1, "\\t"]}', '{a,"b c",NULL}', true, 9007199254740993),
      (2, '', null, null, null, null, '{}', false, null),
      (3, null, '', null, 0, 'null', null, null, -1),
      (4, null, null, null, null, null, null, null, null)`);
    // Bound, so that the stored text really holds a tab, a newline, backslashes and "\N".
    await rows('update odd_values set t = ? where id = 1', ['tab\there\nnew line \\ back\\slash "q" \'s\' \r\b\f\v']);
    await rows('update odd_values set t = ? where id = 4', ['ünïcødé ✓ \\N']);
    const select = 'select id, t, b, ts, n, j, a, f, big from odd_values';
    const c = createSqlConnector('odd', { kind: 'postgres', connection: { url: db.url }, queries: {
      viaCopy: `${select} order by id -- trailing comment`,
      viaCursor: `${select} where :one::int = 1 order by id`,
      version: 'show server_version',
      literal: 'values (1, \'a\'), (2, \'b\')',
    } }, sqlDeps());
    try {
      const a = opContext();
      const b = opContext();
      expect(await c.extra['sql.query']!({ query: 'viaCopy' }, a.ctx)).toEqual({ records: 4 });
      expect(await c.extra['sql.query']!({ query: 'viaCursor', params: { one: 1 } }, b.ctx)).toEqual({ records: 4 });
      expect(a.records).toEqual(b.records);
      expect(a.records[0]).toMatchObject({ id: 1, t: 'tab\there\nnew line \\ back\\slash "q" \'s\' \r\b\f\v', b: 'AP8Q', big: '9007199254740993', f: true, a: ['a', 'b c', null], j: { k: [1, '\t'] } });
      expect(a.records[1]).toMatchObject({ t: '', b: null, a: [] });
      expect(a.records[2]).toMatchObject({ t: null, b: '', j: null });
      expect(a.records[3]).toMatchObject({ t: 'ünïcødé ✓ \\N' });
      // Statements COPY cannot wrap fall back to a cursor.
      const v = opContext();
      expect(await c.extra['sql.query']!({ query: 'version' }, v.ctx)).toEqual({ records: 1 });
      const l = opContext();
      await c.extra['sql.query']!({ query: 'literal' }, l.ctx);
      expect(l.records).toEqual([{ column1: 1, column2: 'a' }, { column1: 2, column2: 'b' }]);
    } finally {
      await c.close();
    }
  });

  it('a literal ? (jsonb operator) is written \\? and stays an operator on both paths', async () => {
    const c = createSqlConnector('jsonq', { kind: 'postgres', connection: { url: db.url }, queries: {
      copy: "select id, j \\? 'k' as has_k from odd_values where id = 1",
      cursor: "select id, j \\? 'k' as has_k from odd_values where id = :id",
    } }, sqlDeps());
    try {
      const a = opContext();
      await c.extra['sql.query']!({ query: 'copy' }, a.ctx);
      const b = opContext();
      await c.extra['sql.query']!({ query: 'cursor', params: { id: 1 } }, b.ctx);
      expect(a.records).toEqual([{ id: 1, has_k: true }]);
      expect(b.records).toEqual(a.records);
    } finally {
      await c.close();
    }
  });

  it('a backend killed in the middle of a listing is a retryable unavailable, and the next job gets a fresh connection', async () => {
    const c = createSqlConnector('killed', { kind: 'postgres', connection: { url: db.url }, pageSize: 100, queries: { all: 'select id, repeat(name, 80) as name from big order by id' } }, sqlDeps());
    try {
      const o = opContext({
        keep: false,
        onPage: async (_page, n) => {
          if (n === 1) await rows(`select pg_terminate_backend(pid) from pg_stat_activity where query like 'copy (select id, repeat(name, 80)%' and pid <> pg_backend_pid()`);
        },
      });
      await expect(c.extra['sql.query']!({ query: 'all' }, o.ctx)).rejects.toMatchObject({ code: 'unavailable', retryable: true });
      expect((await c.checkResource({}, opContext().ctx)).ok).toBe(true);
    } finally {
      await c.close();
    }
  });

  it('backpressure reaches the server: while a page is being written, the COPY waits on the client', async () => {
    const c = createSqlConnector('bp', { kind: 'postgres', connection: { url: db.url }, pageSize: 100, queries: { all: 'select id, repeat(name, 80) as name from big order by id' } }, sqlDeps());
    // ~60 MB of text: more than the kernel's socket buffers can hide.
    const clientWrite = async () =>
      (await rows(`select count(*)::int as n from pg_stat_activity where query like 'copy (select id, repeat(name, 80)%' and wait_event = 'ClientWrite'`))[0]!.n === 1;
    try {
      let blocked = false;
      const o = opContext({
        keep: false,
        onPage: async (_page, n) => {
          // Hold the first page until the server itself is stuck writing to us.
          if (n === 1) {
            await waitFor(clientWrite, 10_000);
            blocked = true;
          }
        },
      });
      expect(await c.extra['sql.query']!({ query: 'all' }, o.ctx)).toEqual({ records: 100_000 });
      expect(blocked).toBe(true);
    } finally {
      await c.close();
    }
  });

  it('streams 100 000 rows through a cursor when the statement has bound values', async () => {
    const c = createSqlConnector('cur', { kind: 'postgres', connection: { url: db.url }, pageSize: 700, queries: { after: 'select id, name from big where id > :after order by id' } }, sqlDeps());
    try {
      const o = opContext({ keep: false });
      expect(await c.extra['sql.query']!({ query: 'after', params: { after: 0 } }, o.ctx)).toEqual({ records: 100_000 });
      expect(Math.max(...o.pages)).toBe(700);
      expect(o.pages).toHaveLength(Math.ceil(100_000 / 700));
    } finally {
      await c.close();
    }
  });

  it('a syntax error in a configured query is a non-retryable invalid_request', async () => {
    const c = createSqlConnector('bad', { kind: 'postgres', connection: { url: db.url }, queries: { broken: 'selec 1' } }, sqlDeps());
    try {
      await expect(c.extra['sql.query']!({ query: 'broken' }, opContext().ctx)).rejects.toMatchObject({ code: 'invalid_request', retryable: false, message: expect.stringContaining('postgres 42601') });
    } finally {
      await c.close();
    }
  });
});
