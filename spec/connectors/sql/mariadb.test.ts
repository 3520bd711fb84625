import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createSqlConnector } from '../../../lib/connectors/sql/index.js';
import { toWireError } from '../../../lib/util/errors.js';
import { waitFor } from '../../fixtures/net.js';
import { CLOSED_PORT, opContext, scratchMysql, sqlDeps, uniquePrefix, type ScratchDatabase } from '../../fixtures/sql.js';
import { APP_SCHEMA, conformanceSuite, type SqlTarget } from './conformance.js';

const MYSQL_URL = process.env.MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';
let db: ScratchDatabase;
const rows = async (sql: string, bindings: unknown[] = []) => ((await db.admin.raw(sql, bindings as never)) as unknown as [Record<string, unknown>[]])[0];
const ident = (name: string) => '`' + name.replace(/`/g, '``') + '`';

const target: SqlTarget = {
  kind: 'mysql',
  async setup() {
    db = await scratchMysql(MYSQL_URL);
  },
  async teardown() {
    await db.drop();
  },
  resource: () => ({ kind: 'mysql', connection: { url: db.url } }),
  admin: rows,
  async createAppSchema() {
    for (const sql of APP_SCHEMA) await rows(sql);
    // MariaDB's Sequence engine: seq_1_to_N is a virtual table of N rows.
    await rows(`insert into big select seq, concat('row ', seq) from seq_1_to_100000`);
  },
  grantStatement: 'insert ignore into app_members (user_id, group_id) values (:accountId, :entitlementId)',
  sleep: {
    sql: 'select sleep(30) as slept',
    running: async () => Number((await rows(`select count(*) as n from information_schema.processlist where info = 'select sleep(30) as slept'`))[0]!.n),
  },
  closedResource: async () => ({ kind: 'mysql', connection: { host: '127.0.0.1', port: CLOSED_PORT, user: 'x' }, connectTimeoutMs: 2000 }),
  native: {
    resource: () => ({ kind: 'mysql', connection: { url: db.url } }),
    async create(prefix) {
      const user = `${prefix}_alice`;
      const p = { account: `'${user}'@'%'`, role: `${prefix}_readers`, oddRole: `${prefix}_o"k.r\`x [y]` };
      await rows(`create user ?@'%'`, [user]);
      await rows(`create role ${ident(p.role)}`);
      await rows(`create role ${ident(p.oddRole)}`);
      return p;
    },
    exists: async (name) => (await rows('select 1 as x from mysql.user where User = ?', [name])).length > 0,
    async drop(prefix) {
      for (const r of await rows(`select User as u, Host as h, is_role as role from mysql.user where User like ?`, [`${prefix}%`])) {
        if (r.role === 'Y') await rows(`drop role ${ident(String(r.u))}`);
        else await rows('drop user ?@?', [r.u, r.h]);
      }
    },
  },
};

conformanceSuite(target);

describe('mysql: backpressure', () => {
  it('while a page is being written, the server waits on the network', async () => {
    const sql = "select seq as id, repeat('x', 600) as pad from seq_1_to_100000";
    const c = createSqlConnector('bp', { kind: 'mysql', connection: { url: db.url }, pageSize: 100, queries: { all: sql } }, sqlDeps());
    // ~60 MB: more than the kernel's socket buffers can hide.
    const writing = async () => Number((await rows(`select count(*) as n from information_schema.processlist where info = ? and state = 'Writing to net'`, [sql]))[0]!.n) === 1;
    try {
      let blocked = false;
      const o = opContext({
        keep: false,
        onPage: async (_page, n) => {
          if (n === 1) {
            await waitFor(writing, 10_000);
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
  it('a connection killed in the middle of a listing is a retryable unavailable, and the next job gets a fresh one', async () => {
    const sql = "select seq as id, repeat('y', 600) as pad from seq_1_to_100000";
    const c = createSqlConnector('killed', { kind: 'mysql', connection: { url: db.url }, pageSize: 100, queries: { all: sql } }, sqlDeps());
    try {
      const o = opContext({
        keep: false,
        onPage: async (_page, n) => {
          if (n === 1) for (const r of await rows('select id from information_schema.processlist where info = ?', [sql])) await rows(`kill ${Number(r.id)}`);
        },
      });
      await expect(c.extra['sql.query']!({ query: 'all' }, o.ctx)).rejects.toMatchObject({ code: 'unavailable', retryable: true });
      expect((await c.checkResource({}, opContext().ctx)).ok).toBe(true);
    } finally {
      await c.close();
    }
  });
});

describe('mysql: credentials', () => {
  const user = `${uniquePrefix()}_pw`;
  const dir = mkdtempSync(join(tmpdir(), 'outpost-sql-'));
  beforeAll(async () => {
    await rows(`create user ?@'%' identified by 'Right-Pass-1234'`, [user]);
  });
  afterAll(async () => {
    await rows(`drop user if exists ?@'%'`, [user]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('a wrong password is invalid_credentials, and the password appears nowhere', async () => {
    const wrong = 'Wr0ng-Pass-Secret-5678';
    const file = join(dir, 'pw');
    writeFileSync(file, `${wrong}\n`);
    const deps = sqlDeps(true);
    const u = new URL(db.url);
    const c = createSqlConnector('creds', { kind: 'mysql', connection: { host: u.hostname, port: Number(u.port), user, database: db.name, passwordFile: file } }, deps);
    try {
      let error: unknown;
      await c.checkResource({}, opContext().ctx).catch((e: unknown) => (error = e));
      expect(error).toMatchObject({ code: 'invalid_credentials', retryable: false });
      const wire = toWireError(error);
      expect(wire.code).toBe('invalid_credentials');
      expect(JSON.stringify(wire)).not.toContain(wrong);
      expect(String((error as Error).message)).not.toContain(wrong);
      expect(deps.lines.join('\n')).not.toContain(wrong);
    } finally {
      await c.close();
    }
  });

  it('an account without privileges gets permission_denied from the native model', async () => {
    const u = new URL(db.url);
    const c = createSqlConnector('weak', { kind: 'mysql', connection: { host: u.hostname, port: Number(u.port), user, password: 'Right-Pass-1234' } }, sqlDeps());
    try {
      await expect(c.listAccounts({}, opContext().ctx)).rejects.toMatchObject({ code: 'permission_denied', retryable: false });
    } finally {
      await c.close();
    }
  });

  it('the right password from passwordEnv works', async () => {
    process.env.OUTPOST_TEST_SQL_PW = 'Right-Pass-1234';
    const u = new URL(db.url);
    const c = createSqlConnector('creds2', { kind: 'mysql', connection: { host: u.hostname, port: Number(u.port), user, passwordEnv: 'OUTPOST_TEST_SQL_PW' } }, sqlDeps());
    try {
      expect((await c.checkResource({}, opContext().ctx)).ok).toBe(true);
    } finally {
      await c.close();
      delete process.env.OUTPOST_TEST_SQL_PW;
    }
  });
});
