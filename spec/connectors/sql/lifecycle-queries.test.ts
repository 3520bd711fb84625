import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import knexPkg, { type Knex } from 'knex';
import { createSqlConnector } from '../../../lib/connectors/sql/index.js';
import type { Connector } from '../../../lib/connectors/types.js';
import type { AccountListingResult } from '../../../lib/protocol/operations.js';
import { toWireError } from '../../../lib/util/errors.js';
import { opContext, rejection, sqlDeps } from '../../fixtures/sql.js';

/**
 * The queries model's account lifecycle on a real SQLite file: the
 * application's own users table, one configured statement per operation, a
 * change counter (`seq`) as the delta watermark and soft deletes listed as
 * `{id, deleted: true}`.
 */
const PW = 'Queries-Plain-Pw-3b4c';
let dir: string;
let admin: Knex;
let c: Connector;
const NEXT = '(select coalesce(max(seq), 0) + 1 from users)';
const statements = {
  listAccounts: 'select id, email, dept from users where deleted = 0 order by id',
  getAccount: 'select id, email, dept from users where id = :accountId and deleted = 0',
  createAccount: `insert into users (id, email, dept, enabled, seq) values (:accountId, :email, :dept, :enabled, ${NEXT}) on conflict do nothing`,
  updateAccount: `update users set dept = :dept, seq = ${NEXT} where id = :accountId and deleted = 0 and dept is not :dept`,
  deleteAccount: `update users set deleted = 1, seq = ${NEXT} where id = :accountId and deleted = 0`,
  setPassword: `update users set secret = :password, must_change = :mustChange, seq = ${NEXT} where id = :accountId and deleted = 0`,
  accountsCursor: 'select coalesce(max(seq), 0) as w from users',
  listAccountsSince: 'select id, email, dept, deleted from users where seq > cast(:since as integer) order by id',
  listGrantsNested: 'select user_id as accountId, group_id as entitlementId, via from memberships order by 1, 2',
};
const resource = (extra: Record<string, unknown> = {}) => ({
  kind: 'sqlite',
  connection: { filename: join(dir, 'app.db') },
  statements,
  accounts: { updatable: ['dept'], deletions: 'listed' },
  ...extra,
});
const rows = async (sql: string, b: unknown[] = []) => (await admin.raw(sql, b as never)) as Record<string, unknown>[];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'outpost-sqlq-'));
  admin = knexPkg({ client: 'better-sqlite3', connection: { filename: join(dir, 'app.db') }, useNullAsDefault: true });
  await rows(`create table users (id text primary key, email text check (email is null or length(email) < 40), dept text, enabled int,
                secret text, must_change int, deleted int not null default 0, seq int not null)`);
  await rows('create table memberships (user_id text, group_id text, via text)');
  await rows(`insert into memberships values ('u1', 'g1', null), ('u1', 'g2', 'g1')`);
  for (let i = 1; i <= 100; i++) await rows(`insert into users (id, email, dept, enabled, seq) values (?, ?, 'it', 1, ?)`, [`u${i}`, `u${i}@example.org`, i]);
  c = createSqlConnector('app', resource(), sqlDeps());
});

afterAll(async () => {
  await c?.close();
  await admin?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

describe('queries model: account lifecycle (sqlite)', () => {
  it('createAccount binds the payload, idempotently; getAccount reads it back', async () => {
    const p = { account: { name: 'new1', email: 'new1@example.org', attributes: { dept: 'hr' } } };
    expect(await c.createAccount!(p, opContext().ctx)).toEqual({ changed: true, accountId: 'new1' });
    expect(await c.createAccount!(p, opContext().ctx)).toEqual({ changed: false, accountId: 'new1' });
    expect(await c.getAccount!({ accountId: 'new1' }, opContext().ctx)).toEqual({
      id: 'new1', uid: null, name: null, email: 'new1@example.org', enabled: true, attributes: { dept: 'hr' },
    });
    expect(await rejection(c.getAccount!({ accountId: 'nobody' }, opContext().ctx))).toMatchObject({ code: 'not_found', message: 'accountId names no account' });
  });

  it('a password the createAccount statement does not take is refused, not dropped', async () => {
    const err = await rejection(c.createAccount!({ account: { name: 'new2' }, password: PW }, opContext().ctx));
    expect(err).toMatchObject({ code: 'invalid_request', message: expect.stringContaining('takes no :password') });
    expect(await rows(`select * from users where id = 'new2'`)).toEqual([]);
  });

  it('a failing statement keeps its code but not the server text (which may quote payload values)', async () => {
    const err = await rejection(c.createAccount!({ account: { name: 'long', email: `${'x'.repeat(50)}@example.org` } }, opContext().ctx));
    expect(toWireError(err)).toEqual({
      code: 'conflict',
      retryable: false,
      message: 'sqlite SQLITE_CONSTRAINT_CHECK: statements.createAccount failed: conflict (server text withheld: the statement carries payload values)',
    });
  });

  it('updateAccount sets allow-listed attributes only', async () => {
    expect(await c.updateAccount!({ accountId: 'u5', attributes: { dept: 'ops' } }, opContext().ctx)).toEqual({ changed: true });
    expect(await c.updateAccount!({ accountId: 'u5', attributes: { dept: 'ops' } }, opContext().ctx)).toEqual({ changed: false });
    const err = await rejection(c.updateAccount!({ accountId: 'u5', attributes: { email: 'x@y.z' } }, opContext().ctx));
    expect(err).toMatchObject({ code: 'forbidden', message: 'attributes: only the attributes in resources.app.accounts.updatable may be set' });
  });

  it('setPassword binds password and mustChange; an unknown account is not_found', async () => {
    expect(await c.setPassword!({ accountId: 'u6', password: PW, mustChange: true }, opContext().ctx)).toEqual({ changed: true });
    expect(await rows(`select secret, must_change from users where id = 'u6'`)).toEqual([{ secret: PW, must_change: 1 }]);
    const err = await rejection(c.setPassword!({ accountId: 'nobody', password: PW }, opContext().ctx));
    expect(err).toMatchObject({ code: 'not_found' });
    expect(err.message).not.toContain(PW);
  });

  it('deleteAccount: true, then false', async () => {
    expect(await c.deleteAccount!({ accountId: 'u7' }, opContext().ctx)).toEqual({ changed: true });
    expect(await c.deleteAccount!({ accountId: 'u7' }, opContext().ctx)).toEqual({ changed: false });
  });

  it('listAccounts gives a cursor; since lists only what changed after it, deletions as {id, deleted}', async () => {
    const all = opContext();
    const first = (await c.listAccounts({}, all.ctx)) as AccountListingResult;
    expect(first).toMatchObject({ records: 100, delta: false, deletions: 'listed', cursor: expect.stringMatching(/^sq1\./) });
    await c.updateAccount!({ accountId: 'u10', attributes: { dept: 'sales' } }, opContext().ctx);
    await c.deleteAccount!({ accountId: 'u11' }, opContext().ctx);
    const d = opContext();
    const delta = (await c.listAccounts({ since: first.cursor }, d.ctx)) as AccountListingResult;
    expect(delta).toMatchObject({ records: 2, delta: true, deletions: 'listed', cursor: expect.stringMatching(/^sq1\./) });
    expect(d.records).toEqual([expect.objectContaining({ id: 'u10', attributes: expect.objectContaining({ dept: 'sales' }) }), { id: 'u11', deleted: true }]);
    const none = opContext();
    expect(await c.listAccounts({ since: delta.cursor }, none.ctx)).toMatchObject({ records: 0, delta: true });
  });

  it('a cursor from another resource forces a full listing; a forged one is refused without echo', async () => {
    const other = createSqlConnector('other', resource(), sqlDeps());
    try {
      const o = opContext();
      const { cursor } = (await other.listAccounts({}, o.ctx)) as AccountListingResult;
      const full = opContext();
      expect(await c.listAccounts({ since: cursor }, full.ctx)).toMatchObject({ delta: false, records: full.records.length });
      expect(full.records.length).toBeGreaterThan(90);
    } finally {
      await other.close();
    }
    const err = await rejection(c.listAccounts({ since: 'sq1.hunter2' }, opContext().ctx));
    expect(err).toMatchObject({ code: 'invalid_request', message: 'since: not a cursor made by a SQL resource listing' });
  });

  it('listGrants {nested: true} maps via; an operation without its statement does not serve', async () => {
    const o = opContext();
    await c.listGrants({ nested: true }, o.ctx);
    expect(o.records).toEqual([{ accountId: 'u1', entitlementId: 'g1' }, { accountId: 'u1', entitlementId: 'g2', via: 'g1' }]);
    const bare = createSqlConnector('bare', { kind: 'sqlite', connection: { filename: join(dir, 'app.db') }, statements: { listAccounts: statements.listAccounts } }, sqlDeps());
    try {
      for (const op of [
        () => bare.getAccount!({ accountId: 'u1' }, opContext().ctx),
        () => bare.createAccount!({ account: { name: 'x' } }, opContext().ctx),
        () => bare.updateAccount!({ accountId: 'u1', attributes: {} }, opContext().ctx),
        () => bare.deleteAccount!({ accountId: 'u1' }, opContext().ctx),
        () => bare.setPassword!({ accountId: 'u1', password: PW }, opContext().ctx),
        () => bare.listGrants({ nested: true }, opContext().ctx),
      ]) {
        const err = await rejection(op());
        expect(err).toMatchObject({ code: 'unknown_type', retryable: false, message: expect.stringContaining('resource "bare" does not serve') });
      }
      const since = opContext();
      expect(await bare.listAccounts({ since: 'sq1.x' }, since.ctx)).toMatchObject({ delta: false, deletions: 'unsupported' });
    } finally {
      await bare.close();
    }
  });
});
