import { readFileSync } from 'node:fs';
import mysql from 'mysql2/promise';
import knexPkg, { type Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createSqlConnector } from '../../../lib/connectors/sql/index.js';
import { mysqlNativeHash } from '../../../lib/connectors/sql/verifiers.js';
import type { Connector } from '../../../lib/connectors/types.js';
import type { GrantRecord } from '../../../lib/protocol/operations.js';
import { toWireError } from '../../../lib/util/errors.js';
import { startMariaDb, type MariaDbServer } from '../../fixtures/sql-mariadb.js';
import { opContext, rejection, sqlDeps, uniquePrefix } from '../../fixtures/sql.js';

/**
 * The account lifecycle on MariaDB: on the shared server (MYSQL_URL) and on a
 * throwaway one with the general log on, which records every statement the
 * agent sends and must never hold a plaintext password. The agent is root,
 * which the server would let do anything: each refusal is the connector's.
 */
const PW1 = 'First-Maria-Pw-4a7b';
const PW2 = 'Second-Maria-Pw-8c9d';
const PW3 = 'Third-Maria-Pw-1e2f';
const WRONG = 'Wrong-Maria-Pw-0000';
let throwaway: MariaDbServer;
const ms: Record<string, number> = {};
beforeAll(async () => {
  const t = performance.now();
  throwaway = await startMariaDb();
  ms.startThrowawayServer = Math.round(performance.now() - t);
}, 60_000);
afterAll(async () => {
  await throwaway?.stop();
  console.log(`lifecycle-mariadb timings (ms): ${JSON.stringify(ms)}`);
}, 60_000);

const targets: Array<[string, () => string, boolean]> = [
  ['shared server (MYSQL_URL)', () => process.env.MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test', false],
  ['throwaway server with the general log', () => throwaway.url, true],
];

describe.each(targets)('mariadb: account lifecycle on the %s', (_name, serverUrl, generalLog) => {
  const P = uniquePrefix();
  const n = (s: string) => `${P}_${s}`;
  const acct = (s: string) => `'${n(s)}'@'%'`;
  const ident = (name: string) => '`' + name.replace(/`/g, '``') + '`';
  let admin: Knex;
  let c: Connector;
  let url: URL;
  let me: string;
  const rows = async (sql: string, b: unknown[] = []) => ((await admin.raw(sql, b as never)) as unknown as [Record<string, unknown>[]])[0];
  const user = async (u: string, h = '%') => (await rows('select * from mysql.user where User = ? and Host = ?', [u, h]))[0];
  async function login(u: string, password: string): Promise<string> {
    const conn = await mysql.createConnection({ host: url.hostname, port: Number(url.port || 3306), user: u, password });
    try {
      const [r] = (await conn.query('select current_user() as u')) as unknown as [Array<{ u: string }>];
      return r[0]!.u;
    } finally {
      await conn.end();
    }
  }

  beforeAll(async () => {
    url = new URL(serverUrl());
    admin = knexPkg({ client: 'mysql2', connection: serverUrl(), pool: { min: 0, max: 2 } });
    me = String((await rows('select current_user() as u'))[0]!.u);
    for (const sql of [
      `create user '${n('reader')}'@'%'`,
      `grant select on *.* to '${n('reader')}'@'%'`,
      `create role ${ident(n('superrole'))}`,
      `grant super on *.* to ${ident(n('superrole'))}`,
      `create user '${n('sneaky')}'@'%'`,
      `grant ${ident(n('superrole'))} to '${n('sneaky')}'@'%'`,
      `create role ${ident(n('r1'))}`,
      `create role ${ident(n('r2'))}`,
      `create role ${ident(n('r3'))}`,
      `grant ${ident(n('r2'))} to ${ident(n('r1'))}`,
      `grant ${ident(n('r3'))} to ${ident(n('r2'))}`,
    ]) {
      await rows(sql);
    }
    c = createSqlConnector('maria', { kind: 'mysql', connection: { url: serverUrl() }, accounts: { updatable: ['maxUserConnections'] } }, sqlDeps());
  }, 60_000);

  afterAll(async () => {
    await c?.close();
    if (admin) {
      for (const r of await rows(`select User as u, Host as h, is_role as role from mysql.user where User like ?`, [`${P}%`])) {
        if (r.role === 'Y') await rows(`drop role ${ident(String(r.u))}`);
        else await rows('drop user ?@?', [r.u, r.h]);
      }
      await admin.destroy();
    }
  }, 60_000);

  it('createAccount makes user@% with a mysql_native_password hash computed by the agent, idempotently', async () => {
    const p = { account: { name: n('alice') }, password: PW1 };
    const t = performance.now();
    expect(await c.createAccount!(p, opContext().ctx)).toEqual({ changed: true, accountId: acct('alice') });
    ms[`createAccount ${generalLog ? 'throwaway' : 'shared'}`] = Math.round(performance.now() - t);
    expect(await c.createAccount!(p, opContext().ctx)).toEqual({ changed: false, accountId: acct('alice') });
    expect(await user(n('alice'))).toMatchObject({ plugin: 'mysql_native_password', authentication_string: mysqlNativeHash(PW1) });
    expect(await c.getAccount!({ accountId: acct('alice') }, opContext().ctx)).toMatchObject({ id: acct('alice'), name: n('alice'), enabled: true });
  });

  it('the new user logs in with its password; a wrong one fails', async () => {
    expect(await login(n('alice'), PW1)).toBe(`${n('alice')}@%`);
    await expect(login(n('alice'), WRONG)).rejects.toMatchObject({ errno: 1045 });
  });

  it('setPassword changes it; mustChange expires it', async () => {
    expect(await c.setPassword!({ accountId: acct('alice'), password: PW2 }, opContext().ctx)).toEqual({ changed: true });
    expect(await login(n('alice'), PW2)).toBe(`${n('alice')}@%`);
    await expect(login(n('alice'), PW1)).rejects.toMatchObject({ errno: 1045 });
    expect(await c.setPassword!({ accountId: acct('alice'), password: PW3, mustChange: true }, opContext().ctx)).toEqual({ changed: true });
    expect(await user(n('alice'))).toMatchObject({ password_expired: 'Y', authentication_string: mysqlNativeHash(PW3) });
    expect(await c.setPassword!({ accountId: acct('alice'), password: PW2 }, opContext().ctx)).toEqual({ changed: true });
    expect(await user(n('alice'))).toMatchObject({ password_expired: 'N' });
  });

  it('createAccount with enabled false locks the account; without a password it still has no empty one', async () => {
    expect(await c.createAccount!({ account: { name: n('locked'), enabled: false } }, opContext().ctx)).toEqual({ changed: true, accountId: acct('locked') });
    expect((await c.getAccount!({ accountId: acct('locked') }, opContext().ctx)).enabled).toBe(false);
    await c.createAccount!({ account: { name: n('nopw') } }, opContext().ctx);
    expect(String((await user(n('nopw')))?.authentication_string)).toMatch(/^\*[0-9A-F]{40}$/);
    await expect(login(n('nopw'), '')).rejects.toMatchObject({ errno: 1045 });
  });

  it('updateAccount sets an allow-listed resource limit, once', async () => {
    const p = { accountId: acct('alice'), attributes: { maxUserConnections: '3' } };
    expect(await c.updateAccount!(p, opContext().ctx)).toEqual({ changed: true });
    expect(await c.updateAccount!(p, opContext().ctx)).toEqual({ changed: false });
    expect(Number((await user(n('alice')))?.max_user_connections)).toBe(3);
    expect(await rejection(c.updateAccount!({ accountId: acct('alice'), attributes: { maxQueriesPerHour: '1' } }, opContext().ctx))).toMatchObject({ code: 'forbidden' });
  });

  it.each([
    ["the agent's own account", () => me.replace(/^(.*)@(.*)$/, "'$1'@'$2'"), /is the agent's own account/],
    ['a user with a global privilege', () => acct('reader'), /has global or administrative privileges/],
    ['a user holding a role with SUPER', () => acct('sneaky'), /is a member of a privileged role/],
    ["the server's own account", () => `'mariadb.sys'@'localhost'`, /is an account the database server itself owns/],
  ])('refuses writes to %s and changes nothing', async (_what, id, rule) => {
    const accountId = id();
    const [u, h] = [accountId.slice(1, accountId.indexOf("'@'")), accountId.slice(accountId.indexOf("'@'") + 3, -1)];
    const before = await user(u, h);
    expect(before).toBeDefined();
    for (const op of [
      () => c.setPassword!({ accountId, password: PW1 }, opContext().ctx),
      () => c.deleteAccount!({ accountId }, opContext().ctx),
      () => c.updateAccount!({ accountId, attributes: { maxUserConnections: '1' } }, opContext().ctx),
      () => c.setAccountEnabled({ accountId, enabled: false }, opContext().ctx),
    ]) {
      const err = await rejection(op());
      expect(toWireError(err)).toEqual({ code: 'forbidden', retryable: false, message: expect.stringMatching(rule) });
      expect(err.message).not.toContain(PW1);
    }
    expect(await user(u, h)).toEqual(before);
  });

  it('listGrants {nested: true} follows roles granted to roles, with via', async () => {
    await rows(`grant ${ident(n('r1'))} to '${n('alice')}'@'%'`);
    const o = opContext();
    await c.listGrants({ nested: true }, o.ctx);
    expect((o.records as GrantRecord[]).filter((g) => g.accountId === acct('alice'))).toEqual([
      { accountId: acct('alice'), entitlementId: n('r1') },
      { accountId: acct('alice'), entitlementId: n('r2'), via: n('r1') },
      { accountId: acct('alice'), entitlementId: n('r3'), via: n('r1') },
    ]);
  });

  it('listAccounts {since}: a full listing that says deletions are unsupported', async () => {
    const o = opContext();
    expect(await c.listAccounts({ since: 'x' }, o.ctx)).toEqual({ records: o.records.length, delta: false, deletions: 'unsupported' });
  });

  it('deleteAccount drops the user once; a second time changes nothing', async () => {
    expect(await c.deleteAccount!({ accountId: acct('alice') }, opContext().ctx)).toEqual({ changed: true });
    expect(await c.deleteAccount!({ accountId: acct('alice') }, opContext().ctx)).toEqual({ changed: false });
    expect(await user(n('alice'))).toBeUndefined();
    await expect(login(n('alice'), PW2)).rejects.toMatchObject({ errno: 1045 });
  });

  if (generalLog) {
    it('the general log holds the statements, with hashes, and no plaintext password', () => {
      const log = readFileSync(throwaway.generalLog, 'utf8');
      expect(log).toContain(`create user '${n('alice')}'@'%' identified via mysql_native_password using '${mysqlNativeHash(PW1)}'`);
      expect(log).toContain(`alter user '${n('alice')}'@'%' password expire`);
      for (const pw of [PW1, PW2, PW3, WRONG]) expect(log).not.toContain(pw);
    });
  }
});
