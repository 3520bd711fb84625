import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import knexPkg, { type Knex } from 'knex';
import { createSqlConnector } from '../../../lib/connectors/sql/index.js';
import { opContext, sqlDeps } from '../../fixtures/sql.js';
import { APP_SCHEMA, appConfig, conformanceSuite, type SqlTarget } from './conformance.js';

let dir: string;
let admin: Knex;
const rows = async (sql: string, bindings: unknown[] = []) => (await admin.raw(sql, bindings as never)) as Record<string, unknown>[];

const target: SqlTarget = {
  kind: 'sqlite',
  async setup() {
    dir = mkdtempSync(join(tmpdir(), 'outpost-sqlite-'));
    admin = knexPkg({ client: 'better-sqlite3', connection: { filename: join(dir, 'app.db') }, useNullAsDefault: true });
  },
  async teardown() {
    await admin.destroy();
    rmSync(dir, { recursive: true, force: true });
  },
  resource: () => ({ kind: 'sqlite', connection: { filename: join(dir, 'app.db') } }),
  admin: rows,
  async createAppSchema() {
    for (const sql of APP_SCHEMA) await rows(sql);
    await rows(`with recursive s(n) as (select 1 union all select n + 1 from s where n < 100000) insert into big select n, 'row ' || n from s`);
  },
  grantStatement: 'insert into app_members (user_id, group_id) values (:accountId, :entitlementId) on conflict do nothing',
};

conformanceSuite(target);

describe('sqlite: locks', () => {
  it('a write lock held elsewhere is a retryable busy, after a short wait', async () => {
    const c = createSqlConnector('locked', appConfig(target), sqlDeps());
    const trx = await admin.transaction();
    try {
      await trx.raw(`insert into app_groups values ('locker', null, null)`);
      await expect(c.grant({ accountId: 'bob', entitlementId: 'readers' }, opContext().ctx)).rejects.toMatchObject({ code: 'busy', retryable: true });
    } finally {
      await trx.rollback();
      await c.close();
    }
    // Once the lock is gone the same operation goes through.
    const again = createSqlConnector('unlocked', appConfig(target), sqlDeps());
    try {
      expect(await again.grant({ accountId: 'bob', entitlementId: 'readers' }, opContext().ctx)).toEqual({ changed: true });
      expect(await again.revoke({ accountId: 'bob', entitlementId: 'readers' }, opContext().ctx)).toEqual({ changed: true });
    } finally {
      await again.close();
    }
  });
});

describe('sqlite: config', () => {
  it('a missing database file is a config error, and is not created', async () => {
    const missing = join(dir, 'typo.db');
    const c = createSqlConnector('typo', { kind: 'sqlite', connection: { filename: missing }, statements: { listAccounts: 'select 1 as id' } }, sqlDeps());
    try {
      await expect(c.checkResource({}, opContext().ctx)).rejects.toMatchObject({ code: 'config_error', message: `resources.typo.connection.filename: ${missing} does not exist` });
      expect(existsSync(missing)).toBe(false);
    } finally {
      await c.close();
    }
  });

  it('has no native model', () => {
    expect(() => createSqlConnector('x', { kind: 'sqlite', model: 'native', connection: { filename: ':memory:' } }, sqlDeps())).toThrow(
      expect.objectContaining({ code: 'config_error', message: expect.stringContaining('resources.x.model: sqlite has no principals') }),
    );
  });
});
