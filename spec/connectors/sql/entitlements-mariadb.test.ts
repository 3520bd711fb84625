import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createSqlConnector } from '../../../lib/connectors/sql/index.js';
import type { Connector } from '../../../lib/connectors/types.js';
import type { EntitlementRecord } from '../../../lib/protocol/operations.js';
import { toWireError } from '../../../lib/util/errors.js';
import { opContext, rejection, scratchMysql, sqlDeps, uniquePrefix, type ScratchDatabase } from '../../fixtures/sql.js';

/**
 * MariaDB `grant`/`revoke` accept only roles listEntitlements lists. The
 * connector runs as the server's root (MYSQL_URL): the database would let
 * every refused grant below through.
 */
const MYSQL_URL = process.env.MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';
const P = uniquePrefix();
const n = (s: string) => `${P}_${s}`;
const ident = (name: string) => '`' + name.replace(/`/g, '``') + '`';
const ALICE = `'${n('alice')}'@'%'`;
let db: ScratchDatabase;
let c: Connector;
const rows = async (sql: string, bindings: unknown[] = []) => ((await db.admin.raw(sql, bindings as never)) as unknown as [Record<string, unknown>[]])[0];

/** Asked through the mysql CLI, outside the connector and its pool. */
function mysqlCli(sql: string): string {
  const u = new URL(MYSQL_URL);
  const args = ['-h', u.hostname, '-P', u.port || '3306', '-u', decodeURIComponent(u.username), '-N', '-B', '-e', sql];
  return execFileSync('mysql', args, { encoding: 'utf8', env: { ...process.env, MYSQL_PWD: decodeURIComponent(u.password) } }).trim();
}
const rolesOfAlice = (): string =>
  mysqlCli(`select coalesce(group_concat(Role order by Role), '') from mysql.roles_mapping where User = '${n('alice')}' and Host = '%'`);

/** The agent's own account, as the server names it (root@127.0.0.1 here). */
let me: { user: string; host: string };

const FORBIDDEN: Array<[string, () => string, RegExp]> = [
  ['a user account', () => n('bob'), /is a user account, not a role/],
  ["the agent's own user", () => me.user, /is a user account, not a role/],
  ['a role granted to the agent', () => n('mine'), /is the agent's own role or one it inherits/],
  ['a role the agent inherits through its role', () => n('mine2'), /is the agent's own role or one it inherits/],
  ['a role with SUPER', () => n('super'), /has global or administrative privileges/],
  ['a role with ALL PRIVILEGES', () => n('all'), /has global or administrative privileges/],
  ['a role with CREATE USER', () => n('createuser'), /has global or administrative privileges/],
  ['a role with FILE', () => n('file'), /has global or administrative privileges/],
  ['a role with PROCESS', () => n('process'), /has global or administrative privileges/],
  ['a role with SHUTDOWN', () => n('shutdown'), /has global or administrative privileges/],
  ['a role with GRANT OPTION on a database', () => n('gopt'), /has global or administrative privileges/],
  ['a role with a privilege on the mysql schema', () => n('grants'), /has global or administrative privileges/],
  ['a role granted a SUPER role', () => n('chain'), /is a member of a role that is not an entitlement/],
];

beforeAll(async () => {
  db = await scratchMysql(MYSQL_URL);
  const [user, host] = String((await rows('select current_user() as u'))[0]!.u).split('@') as [string, string];
  me = { user, host };
  const agent = `'${me.user}'@'${me.host}'`;
  for (const sql of [
    `create user '${n('alice')}'@'%'`,
    `create user '${n('bob')}'@'%'`,
    // CREATE ROLE grants the role to its creator WITH ADMIN OPTION; these two the agent holds as a plain member.
    `create role ${ident(n('mine'))}`,
    `revoke admin option for ${ident(n('mine'))} from ${agent}`,
    `create role ${ident(n('mine2'))}`,
    `grant ${ident(n('mine2'))} to ${ident(n('mine'))}`,
    `create role ${ident(n('super'))}`,
    `grant super on *.* to ${ident(n('super'))}`,
    `create role ${ident(n('all'))}`,
    `grant all privileges on *.* to ${ident(n('all'))}`,
    `create role ${ident(n('createuser'))}`,
    `grant create user on *.* to ${ident(n('createuser'))}`,
    `create role ${ident(n('file'))}`,
    `grant file on *.* to ${ident(n('file'))}`,
    `create role ${ident(n('process'))}`,
    `grant process on *.* to ${ident(n('process'))}`,
    `create role ${ident(n('shutdown'))}`,
    `grant shutdown on *.* to ${ident(n('shutdown'))}`,
    `create role ${ident(n('gopt'))}`,
    `grant select on ${ident(db.name)}.* to ${ident(n('gopt'))} with grant option`,
    `create role ${ident(n('grants'))}`,
    `grant select on mysql.user to ${ident(n('grants'))}`,
    `create role ${ident(n('chain'))}`,
    `grant ${ident(n('super'))} to ${ident(n('chain'))}`,
    `create role ${ident(n('ok'))}`,
    `grant select on ${ident(db.name)}.* to ${ident(n('ok'))}`,
    `create role ${ident(n('app_read'))}`,
    `create role ${ident(n('app_write'))}`,
  ]) {
    await rows(sql);
  }
  c = createSqlConnector('maria', { kind: 'mysql', connection: { url: db.url } }, sqlDeps());
}, 60_000);

afterAll(async () => {
  await c?.close();
  if (db) {
    for (const r of await rows(`select User as u, Host as h, is_role as role from mysql.user where User like ?`, [`${P}%`])) {
      if (r.role === 'Y') await rows(`drop role ${ident(String(r.u))}`);
      else await rows('drop user ?@?', [r.u, r.h]);
    }
    await db.drop();
  }
}, 60_000);

const listed = async (conn: Connector): Promise<string[]> => {
  const o = opContext();
  await conn.listEntitlements({}, o.ctx);
  return (o.records as EntitlementRecord[]).map((e) => e.id);
};

describe('mariadb: grant and revoke accept only entitlements', () => {
  it.each(FORBIDDEN)('refuses %s, for grant and revoke, and changes nothing', async (_what, role, rule) => {
    const entitlementId = role();
    for (const op of ['grant', 'revoke'] as const) {
      const err = await rejection(c[op]({ accountId: ALICE, entitlementId }, opContext().ctx));
      expect(toWireError(err)).toEqual({ code: 'forbidden', message: expect.stringMatching(rule), retryable: false });
    }
    expect(rolesOfAlice()).toBe('');
  });

  it('the refused roles are exactly the ones listEntitlements leaves out', async () => {
    const ids = await listed(c);
    for (const [, role] of FORBIDDEN) expect(ids).not.toContain(role());
    expect(ids.filter((id) => id.startsWith(P)).sort()).toEqual([n('app_read'), n('app_write'), n('ok')]);
  });

  it('an entitlement is still granted and revoked, and the mysql CLI sees exactly that', async () => {
    const p = { accountId: ALICE, entitlementId: n('ok') };
    expect(await c.grant(p, opContext().ctx)).toEqual({ changed: true });
    expect(rolesOfAlice()).toBe(n('ok'));
    expect(await c.grant(p, opContext().ctx)).toEqual({ changed: false });
    expect(await c.revoke(p, opContext().ctx)).toEqual({ changed: true });
    expect(rolesOfAlice()).toBe('');
  });

  it('include/exclude patterns narrow what is listed and granted', async () => {
    const narrowed = createSqlConnector(
      'narrow',
      { kind: 'mysql', connection: { url: db.url }, entitlements: { include: [`${P}_app_?*`, `${P}_ok`], exclude: [`*_write`] } },
      sqlDeps(),
    );
    try {
      expect((await listed(narrowed)).sort()).toEqual([n('app_read'), n('ok')]);
      const excluded = await rejection(narrowed.grant({ accountId: ALICE, entitlementId: n('app_write') }, opContext().ctx));
      expect(excluded).toMatchObject({ code: 'forbidden', retryable: false, message: expect.stringContaining('resources.narrow.entitlements.exclude') });
      const outside = await rejection(narrowed.grant({ accountId: ALICE, entitlementId: n('super') }, opContext().ctx));
      expect(outside).toMatchObject({ code: 'forbidden', message: expect.stringContaining('resources.narrow.entitlements.include') });
      expect(rolesOfAlice()).toBe('');
      const p = { accountId: ALICE, entitlementId: n('app_read') };
      expect(await narrowed.grant(p, opContext().ctx)).toEqual({ changed: true });
      expect(rolesOfAlice()).toBe(n('app_read'));
      expect(await narrowed.revoke(p, opContext().ctx)).toEqual({ changed: true });
      expect(rolesOfAlice()).toBe('');
    } finally {
      await narrowed.close();
    }
  });
});
