import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import knexPkg, { type Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createSqlConnector } from '../../../lib/connectors/sql/index.js';
import type { Connector } from '../../../lib/connectors/types.js';
import type { GrantRecord } from '../../../lib/protocol/operations.js';
import { toWireError } from '../../../lib/util/errors.js';
import { startPgCluster, type PgCluster } from '../../fixtures/sql-pg.js';
import { opContext, rejection, sqlDeps } from '../../fixtures/sql.js';

/**
 * The account lifecycle on PostgreSQL, on a throwaway cluster with
 * scram-sha-256 host authentication and `log_statement = 'all'`: every
 * statement the agent sends lands in the server log, which must never hold a
 * plaintext password. The agent is a realistic LOGIN CREATEROLE role, which
 * PostgreSQL 15 lets alter and drop every non-superuser role: each refusal
 * below is the connector's, not the server's.
 */
const AGENT_PW = 'Agent-Pw-Lifecycle-1';
const PW1 = 'First-Plain-Pw-7c1d';
const PW2 = 'Second-Plain-Pw-9e2f';
const WRONG = 'Wrong-Plain-Pw-0000';
let cluster: PgCluster;
let admin: Knex;
let c: Connector;
const run = (sql: string) => admin.raw(sql);
const role = async (name: string) => (await run(`select r.*, a.rolpassword from pg_roles r join pg_authid a on a.oid = r.oid where r.rolname = '${name}'`)).rows[0];
const ms: Record<string, number> = {};
async function timed<T>(what: string, p: Promise<T>): Promise<T> {
  const t = performance.now();
  const out = await p;
  ms[what] = Math.round(performance.now() - t);
  return out;
}
/** A real login over TCP with SCRAM: resolves to current_user, rejects with the server's error. */
async function login(user: string, password: string): Promise<string> {
  const client = new pg.Client({ host: cluster.host, port: cluster.port, user, password, database: 'postgres' });
  await client.connect();
  try {
    return String((await client.query('select current_user as u')).rows[0].u);
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  cluster = await startPgCluster({ password: 'Cluster-Admin-Pw-42', settings: ['log_statement=all'] });
  admin = knexPkg({ client: 'pg', connection: { host: cluster.host, port: cluster.port, user: 'postgres', password: cluster.password, database: 'postgres' }, pool: { min: 0, max: 2 } });
  for (const sql of [
    `create role outpost_agent login createrole password '${AGENT_PW}'`,
    'create role root_like login superuser',
    'create role cr_role login createrole',
    'create role rls_role login bypassrls',
    'create role repl_role login replication',
    'create role admins nologin superuser',
    'create role sneaky login',
    'grant admins to sneaky',
    'create role monitor_user login',
    'grant pg_monitor to monitor_user',
    'create role agent_group nologin',
    'grant agent_group to outpost_agent',
    'create role g1 nologin',
    'create role g2 nologin',
    'create role g3 nologin',
    'grant g2 to g1',
    'grant g3 to g2',
  ]) {
    await run(sql);
  }
  c = createSqlConnector(
    'pg',
    {
      kind: 'postgres',
      connection: { host: cluster.host, port: cluster.port, user: 'outpost_agent', password: AGENT_PW, database: 'postgres' },
      accounts: { updatable: ['connectionLimit', 'validUntil'] },
    },
    sqlDeps(),
  );
}, 60_000);

afterAll(async () => {
  await c?.close();
  await admin?.destroy();
  await cluster?.stop();
  // Seen, not asserted (benchmarks measure speed): reported in the closing note.
  console.log(`lifecycle-postgres timings (ms): ${JSON.stringify(ms)}`);
}, 60_000);

describe('postgres: account lifecycle (throwaway cluster, scram-sha-256, log_statement=all)', () => {
  it('createAccount makes a LOGIN role without privilege flags, idempotently', async () => {
    const p = { account: { name: 'alice' }, password: PW1 };
    expect(await timed('createAccount', c.createAccount!(p, opContext().ctx))).toEqual({ changed: true, accountId: 'alice' });
    expect(await c.createAccount!(p, opContext().ctx)).toEqual({ changed: false, accountId: 'alice' });
    const r = await role('alice');
    expect(r).toMatchObject({ rolcanlogin: true, rolsuper: false, rolcreaterole: false, rolcreatedb: false, rolreplication: false, rolbypassrls: false });
    expect(String(r.rolpassword)).toMatch(/^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$/);
    expect(await timed('getAccount', c.getAccount!({ accountId: 'alice' }, opContext().ctx))).toMatchObject({
      id: 'alice', name: 'alice', enabled: true, attributes: { superuser: false, createRole: false },
    });
  });

  it('the new role logs in with its password over SCRAM; a wrong one fails', async () => {
    expect(await timed('login', login('alice', PW1))).toBe('alice');
    await expect(login('alice', WRONG)).rejects.toMatchObject({ code: '28P01' });
  });

  it('setPassword changes it (the old one stops working); mustChange is refused and changes nothing', async () => {
    expect(await timed('setPassword', c.setPassword!({ accountId: 'alice', password: PW2 }, opContext().ctx))).toEqual({ changed: true });
    expect(await login('alice', PW2)).toBe('alice');
    await expect(login('alice', PW1)).rejects.toMatchObject({ code: '28P01' });
    const err = await rejection(c.setPassword!({ accountId: 'alice', password: WRONG, mustChange: true }, opContext().ctx));
    expect(toWireError(err)).toEqual({ code: 'invalid_request', retryable: false, message: expect.stringContaining('no "must change password" state') });
    expect(err.message).not.toContain(WRONG);
    expect(await login('alice', PW2)).toBe('alice');
  });

  it('a non-ASCII password is SASLprepped as PostgreSQL does: node-postgres and psql (libpq) both log in', async () => {
    const pw = 'P\u00e4ssw\u00f6rd-\uFB01\u00A0\u00ADend';
    await c.createAccount!({ account: { name: 'dora' }, password: pw }, opContext().ctx);
    expect(await login('dora', pw)).toBe('dora');
    const out = execFileSync('psql', ['-h', cluster.host, '-p', String(cluster.port), '-U', 'dora', '-d', 'postgres', '-AtXc', 'select current_user'], {
      encoding: 'utf8',
      env: { ...process.env, PGPASSWORD: pw },
    });
    expect(out.trim()).toBe('dora');
  });

  it('createAccount with enabled false makes a NOLOGIN role; fields PostgreSQL lacks are refused', async () => {
    expect(await c.createAccount!({ account: { name: 'off user', enabled: false } }, opContext().ctx)).toEqual({ changed: true, accountId: 'off user' });
    expect(await role('off user')).toMatchObject({ rolcanlogin: false, rolpassword: null });
    const err = await rejection(c.createAccount!({ account: { name: 'bob', email: 'bob@example.org' } }, opContext().ctx));
    expect(err).toMatchObject({ code: 'invalid_request', message: expect.stringContaining('account.email') });
    expect(await role('bob')).toBeUndefined();
    expect(await rejection(c.createAccount!({ account: { name: 'pg_mine' } }, opContext().ctx))).toMatchObject({ code: 'forbidden' });
    expect(await rejection(c.createAccount!({ account: { name: 'x'.repeat(64) } }, opContext().ctx))).toMatchObject({ code: 'invalid_request' });
  });

  it('updateAccount sets allow-listed attributes, reports no change on a repeat, refuses others', async () => {
    const p = { accountId: 'alice', attributes: { connectionLimit: '5', validUntil: '2031-02-03T04:05:06Z' } };
    expect(await timed('updateAccount', c.updateAccount!(p, opContext().ctx))).toEqual({ changed: true });
    expect(await c.updateAccount!(p, opContext().ctx)).toEqual({ changed: false });
    const r = await role('alice');
    expect(r.rolconnlimit).toBe(5);
    expect(new Date(r.rolvaliduntil).toISOString()).toBe('2031-02-03T04:05:06.000Z');
    expect(await c.updateAccount!({ accountId: 'alice', attributes: { connectionLimit: null, validUntil: null } }, opContext().ctx)).toEqual({ changed: true });
    expect((await role('alice')).rolconnlimit).toBe(-1);
    const refused = await rejection(c.updateAccount!({ accountId: 'alice', attributes: { superuser: 'true' } }, opContext().ctx));
    expect(refused).toMatchObject({ code: 'forbidden', message: expect.stringContaining('resources.pg.accounts.updatable') });
    const bad = await rejection(c.updateAccount!({ accountId: 'alice', attributes: { connectionLimit: "1; drop role x; --" } }, opContext().ctx));
    expect(bad).toMatchObject({ code: 'invalid_request', message: 'attributes.connectionLimit: must be an integer in [-1, 1000000]' });
    expect(await rejection(c.updateAccount!({ accountId: 'nobody', attributes: { connectionLimit: '1' } }, opContext().ctx))).toMatchObject({ code: 'not_found' });
  });

  it('DROP ROLE is refused while the role owns a table (conflict, non-retryable), then works; a second delete changes nothing', async () => {
    await run('create table owned_by_alice (id int)');
    await run('alter table owned_by_alice owner to alice');
    const err = await rejection(c.deleteAccount!({ accountId: 'alice' }, opContext().ctx));
    expect(toWireError(err)).toEqual({ code: 'conflict', retryable: false, message: expect.stringMatching(/^"alice" cannot be dropped: it owns objects or holds privileges \(postgres 2BP01\)/) });
    expect(await role('alice')).toBeDefined();
    await run('drop table owned_by_alice');
    expect(await timed('deleteAccount', c.deleteAccount!({ accountId: 'alice' }, opContext().ctx))).toEqual({ changed: true });
    expect(await c.deleteAccount!({ accountId: 'alice' }, opContext().ctx)).toEqual({ changed: false });
    expect(await role('alice')).toBeUndefined();
    expect(await rejection(c.getAccount!({ accountId: 'alice' }, opContext().ctx))).toMatchObject({ code: 'not_found', retryable: false });
  });

  it.each([
    ['a superuser', 'root_like', /is a superuser role/],
    ['a CREATEROLE role', 'cr_role', /is a role with CREATEROLE/],
    ['a BYPASSRLS role', 'rls_role', /is a role with BYPASSRLS/],
    ['a REPLICATION role', 'repl_role', /is a role with REPLICATION/],
    ['the agent itself', 'outpost_agent', /is a role with CREATEROLE|is the agent's own account/],
    ["a role the agent inherits", 'agent_group', /is the agent's own account or a role it inherits/],
    ['a member of a superuser role', 'sneaky', /is a member of a privileged role/],
    ['a member of a predefined role', 'monitor_user', /is a member of a privileged role/],
    ['the bootstrap superuser', 'postgres', /is a superuser role/],
  ])('refuses writes to %s, naming the rule, and changes nothing', async (_what, name, rule) => {
    const before = await role(name);
    for (const op of [
      () => c.setPassword!({ accountId: name, password: PW1 }, opContext().ctx),
      () => c.deleteAccount!({ accountId: name }, opContext().ctx),
      () => c.updateAccount!({ accountId: name, attributes: { connectionLimit: '1' } }, opContext().ctx),
      () => c.createAccount!({ account: { name }, password: PW1 }, opContext().ctx),
      () => c.setAccountEnabled({ accountId: name, enabled: false }, opContext().ctx),
    ]) {
      const err = await rejection(op());
      expect(toWireError(err)).toEqual({ code: 'forbidden', retryable: false, message: expect.stringMatching(rule) });
      expect(err.message).toContain('no job may change it');
      expect(err.message).not.toContain(PW1);
    }
    expect(await role(name)).toEqual(before);
  });

  it('a predefined role is refused as such', async () => {
    for (const op of [
      () => c.setPassword!({ accountId: 'pg_monitor', password: PW1 }, opContext().ctx),
      () => c.deleteAccount!({ accountId: 'pg_monitor' }, opContext().ctx),
    ]) {
      expect(await rejection(op())).toMatchObject({ code: 'forbidden', message: expect.stringContaining('"pg_monitor" is a predefined role') });
    }
  });

  it('listGrants {nested: true} follows pg_auth_members through 3 levels, with via', async () => {
    await c.createAccount!({ account: { name: 'carol' } }, opContext().ctx);
    await run('grant g1 to carol');
    const o = opContext();
    await timed('listGrantsNested', c.listGrants({ nested: true }, o.ctx));
    const mine = (o.records as GrantRecord[]).filter((g) => ['carol', 'g1', 'g2'].includes(g.accountId));
    expect(mine).toEqual([
      { accountId: 'carol', entitlementId: 'g1' },
      { accountId: 'carol', entitlementId: 'g2', via: 'g1' },
      { accountId: 'carol', entitlementId: 'g3', via: 'g1' },
      { accountId: 'g1', entitlementId: 'g2' },
      { accountId: 'g1', entitlementId: 'g3', via: 'g2' },
      { accountId: 'g2', entitlementId: 'g3' },
    ]);
    const flat = opContext();
    await c.listGrants({}, flat.ctx);
    expect((flat.records as GrantRecord[]).filter((g) => g.accountId === 'carol')).toEqual([{ accountId: 'carol', entitlementId: 'g1' }]);
  });

  it('listAccounts {since}: no change tracking for roles, so a full listing that says so', async () => {
    const o = opContext();
    const res = await c.listAccounts({ since: 'anything' }, o.ctx);
    expect(res).toEqual({ records: o.records.length, delta: false, deletions: 'unsupported' });
    expect(o.records).toContainEqual(expect.objectContaining({ id: 'carol' }));
  });

  it('the server log holds every statement but no plaintext password', () => {
    const log = readFileSync(cluster.logFile, 'utf8');
    expect(log).toContain('statement: create role "alice" with login');
    expect(log).toMatch(/alter role "alice" with password 'SCRAM-SHA-256\$4096:/);
    for (const pw of [PW1, PW2, WRONG]) expect(log).not.toContain(pw);
  });
});
