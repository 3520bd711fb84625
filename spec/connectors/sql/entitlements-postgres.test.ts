import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createSqlConnector } from '../../../lib/connectors/sql/index.js';
import type { Connector } from '../../../lib/connectors/types.js';
import type { EntitlementRecord } from '../../../lib/protocol/operations.js';
import { toWireError } from '../../../lib/util/errors.js';
import { opContext, rejection, scratchPostgres, sqlDeps, uniquePrefix, type ScratchDatabase } from '../../fixtures/sql.js';

/**
 * PostgreSQL `grant`/`revoke` accept only what listEntitlements lists. The
 * agent connects as a realistic non-superuser role with CREATEROLE, which on
 * PostgreSQL 15 may grant any non-superuser role (pg_execute_server_program
 * included): the database itself would let every refused grant below through.
 */
const PG_URL = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const P = uniquePrefix();
const n = (s: string) => `${P}_${s}`;
const q = (name: string) => `"${name.replace(/"/g, '""')}"`;
let db: ScratchDatabase;
let agent: Connector;
const run = async (sql: string) => db.admin.raw(sql);
/** Asked through the psql CLI, outside the connector and its pool. */
const psql = (sql: string): string => execFileSync('psql', [db.url, '-AtX', '-c', sql], { encoding: 'utf8' }).trim();
const membershipsOf = (role: string): string =>
  psql(`select coalesce(string_agg(r.rolname, ',' order by r.rolname), '') from pg_auth_members am join pg_roles r on r.oid = am.roleid
         join pg_roles m on m.oid = am.member where m.rolname = '${role}'`);
const agentUrl = (): string => {
  const u = new URL(db.url);
  u.username = n('agent');
  return u.toString();
};

/** Entitlement id → the rule its refusal must name. */
const FORBIDDEN: Array<[string, () => string, RegExp]> = [
  ['a predefined role', () => 'pg_execute_server_program', /^"pg_execute_server_program" is a predefined role, not an entitlement$/],
  ['another predefined role', () => 'pg_write_server_files', /is a predefined role/],
  ['a login role', () => n('bob'), /is a login role/],
  ['the superuser', () => 'postgres', /is a predefined role|is a login role/],
  ['a NOLOGIN superuser role', () => n('super'), /is a superuser role/],
  ['a CREATEROLE role', () => n('cr'), /is a role with CREATEROLE/],
  ['a BYPASSRLS role', () => n('rls'), /is a role with BYPASSRLS/],
  ['a REPLICATION role', () => n('repl'), /is a role with REPLICATION/],
  ["the agent's own role", () => n('agent'), /is a login role/],
  ['a role the agent inherits', () => n('agentgrp'), /is the agent's own role or one it inherits/],
  ['a role the agent inherits through another', () => n('agentgrp2'), /is the agent's own role or one it inherits/],
  ['a role that is a member of a predefined role', () => n('chain'), /is a member of a role that is not an entitlement/],
  ["a role that is a member of the agent's role", () => n('backdoor'), /is a member of a role that is not an entitlement/],
];

beforeAll(async () => {
  db = await scratchPostgres(PG_URL);
  for (const sql of [
    `create role ${q(n('agent'))} login createrole`,
    `create role ${q(n('agentgrp'))} nologin`,
    `create role ${q(n('agentgrp2'))} nologin`,
    `grant ${q(n('agentgrp2'))} to ${q(n('agentgrp'))}`,
    `grant ${q(n('agentgrp'))} to ${q(n('agent'))}`,
    `create role ${q(n('alice'))} login`,
    `create role ${q(n('bob'))} login`,
    `create role ${q(n('super'))} nologin superuser`,
    `create role ${q(n('cr'))} nologin createrole`,
    `create role ${q(n('rls'))} nologin bypassrls`,
    `create role ${q(n('repl'))} nologin replication`,
    `create role ${q(n('chain'))} nologin`,
    `grant pg_execute_server_program to ${q(n('chain'))}`,
    `create role ${q(n('backdoor'))} nologin`,
    `grant ${q(n('agentgrp'))} to ${q(n('backdoor'))}`,
    `create role ${q(n('ok'))} nologin`,
    `create role ${q(n('app_read'))} nologin`,
    `create role ${q(n('app_write'))} nologin`,
    `create role ${q(n('secret_x'))} nologin`,
  ]) {
    await run(sql);
  }
  agent = createSqlConnector('pg', { kind: 'postgres', connection: { url: agentUrl() } }, sqlDeps());
}, 60_000);

afterAll(async () => {
  await agent?.close();
  if (db) {
    for (const r of (await run(`select rolname from pg_roles where starts_with(rolname, '${P}')`)).rows as Array<{ rolname: string }>) {
      await run(`drop role if exists ${q(r.rolname)}`);
    }
    await db.drop();
  }
}, 60_000);

const listed = async (c: Connector): Promise<string[]> => {
  const o = opContext();
  await c.listEntitlements({}, o.ctx);
  return (o.records as EntitlementRecord[]).map((e) => e.id);
};

describe('postgres: grant and revoke accept only entitlements', () => {
  it.each(FORBIDDEN)('refuses %s, for grant and revoke, and changes nothing', async (_what, role, rule) => {
    const entitlementId = role();
    for (const op of ['grant', 'revoke'] as const) {
      const err = await rejection(agent[op]({ accountId: n('alice'), entitlementId }, opContext().ctx));
      expect(toWireError(err)).toEqual({ code: 'forbidden', message: expect.stringMatching(rule), retryable: false });
      expect(err.message).toContain('not an entitlement');
    }
    expect(membershipsOf(n('alice'))).toBe('');
  });

  it('the refused roles are exactly the ones listEntitlements leaves out', async () => {
    const ids = await listed(agent);
    for (const [, role] of FORBIDDEN) expect(ids).not.toContain(role());
    expect(ids.filter((id) => id.startsWith(P)).sort()).toEqual([n('app_read'), n('app_write'), n('ok'), n('secret_x')]);
    expect(ids.some((id) => id.startsWith('pg_'))).toBe(false);
  });

  it('an entitlement is still granted and revoked, and psql sees exactly that', async () => {
    const p = { accountId: n('alice'), entitlementId: n('ok') };
    expect(await agent.grant(p, opContext().ctx)).toEqual({ changed: true });
    expect(membershipsOf(n('alice'))).toBe(n('ok'));
    expect(await agent.grant(p, opContext().ctx)).toEqual({ changed: false });
    expect(await agent.revoke(p, opContext().ctx)).toEqual({ changed: true });
    expect(membershipsOf(n('alice'))).toBe('');
  });

  it('a role made dangerous after listing is refused at grant time (checked in the transaction)', async () => {
    await run(`create role ${q(n('late'))} nologin`);
    expect(await listed(agent)).toContain(n('late'));
    await run(`grant pg_read_server_files to ${q(n('late'))}`);
    const err = await rejection(agent.grant({ accountId: n('alice'), entitlementId: n('late') }, opContext().ctx));
    expect(err).toMatchObject({ code: 'forbidden', retryable: false });
    expect(membershipsOf(n('alice'))).toBe('');
  });

  it('unknown names are not_found and never echoed', async () => {
    const guess = 'hunter2 PgAgentPw-7f3k9';
    for (const p of [
      { accountId: n('alice'), entitlementId: guess },
      { accountId: guess, entitlementId: n('ok') },
    ]) {
      const err = await rejection(agent.grant(p, opContext().ctx));
      expect(err).toMatchObject({ code: 'not_found', retryable: false });
      expect(err.message).not.toContain('hunter2');
    }
  });
});

describe('postgres: entitlements include/exclude', () => {
  let narrowed: Connector;
  beforeAll(() => {
    narrowed = createSqlConnector(
      'narrow',
      { kind: 'postgres', connection: { url: agentUrl() }, entitlements: { include: [`${P}_app_*`, `${P}_ok`], exclude: ['*_write'] } },
      sqlDeps(),
    );
  });
  afterAll(() => narrowed?.close());

  it('lists only what the patterns allow', async () => {
    expect((await listed(narrowed)).sort()).toEqual([n('app_read'), n('ok')]);
  });

  it('grants what they allow and refuses, naming the list, what they do not', async () => {
    const excluded = await rejection(narrowed.grant({ accountId: n('alice'), entitlementId: n('app_write') }, opContext().ctx));
    expect(excluded).toMatchObject({ code: 'forbidden', retryable: false, message: expect.stringContaining('resources.narrow.entitlements.exclude') });
    const notIncluded = await rejection(narrowed.revoke({ accountId: n('alice'), entitlementId: n('secret_x') }, opContext().ctx));
    expect(notIncluded).toMatchObject({ code: 'forbidden', message: expect.stringContaining('resources.narrow.entitlements.include') });
    // The patterns narrow the database's rule, never widen it.
    const wide = createSqlConnector('wide', { kind: 'postgres', connection: { url: agentUrl() }, entitlements: { include: ['*'] } }, sqlDeps());
    try {
      const predefined = await rejection(wide.grant({ accountId: n('alice'), entitlementId: 'pg_execute_server_program' }, opContext().ctx));
      expect(predefined).toMatchObject({ code: 'forbidden' });
    } finally {
      await wide.close();
    }
    expect(membershipsOf(n('alice'))).toBe('');
    const p = { accountId: n('alice'), entitlementId: n('app_read') };
    expect(await narrowed.grant(p, opContext().ctx)).toEqual({ changed: true });
    expect(membershipsOf(n('alice'))).toBe(n('app_read'));
    expect(await narrowed.revoke(p, opContext().ctx)).toEqual({ changed: true });
  });
});
