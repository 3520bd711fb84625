import { afterAll, describe, expect, it } from '@jest/globals';
import { SqlDatabase } from '../../../lib/connectors/sql/database.js';
import { compiler } from '../../../lib/connectors/sql/models.js';
import { mssqlStatements } from '../../../lib/connectors/sql/native/mssql.js';
import { createSqlConnector, parseOptions } from '../../../lib/connectors/sql/index.js';
import { silentLogger } from '../../../lib/log/index.js';
import { systemClock } from '../../../lib/util/clock.js';
import { CLOSED_PORT, opContext, sqlDeps } from '../../fixtures/sql.js';
import { conformanceSuite } from './conformance.js';
import { mssqlTarget } from './mssql-target.js';

const env = { readSecret: () => 'unused', env: {} };

describe('mssql: statements (compiled offline by the knex mssql client)', () => {
  const db = new SqlDatabase(parseOptions('ms', { kind: 'mssql', connection: { host: 'db.invalid', user: 'u' } }, env), {
    log: silentLogger(),
    clock: systemClock,
  });
  const s = mssqlStatements(compiler(db));
  afterAll(() => db.close());

  it('listings read the catalog views with no parameters', () => {
    expect(s.listAccounts().sql).toMatch(/from sys\.database_principals dp left join sys\.server_principals sp on sp\.sid = dp\.sid/);
    expect(s.listAccounts().bindings).toEqual([]);
    expect(s.listEntitlements().sql).toMatch(/from classified c where c\.refused is null order by c\.id$/);
    expect(s.listGrants().sql).toMatch(/from sys\.database_role_members rm/);
  });

  it('lookups bind names as @p parameters', () => {
    expect(s.accountState(`o'brien`)).toEqual({ sql: expect.stringContaining('where dp.name = @p0 and'), bindings: [`o'brien`] });
    expect(s.entitlementState('readers')).toEqual({ sql: expect.stringMatching(/select c\.refused from classified c where c\.id = @p0$/), bindings: ['readers'] });
    expect(s.isMember('alice', 'readers')).toEqual({ sql: expect.stringMatching(/where m\.name = @p0 and r\.name = @p1$/), bindings: ['alice', 'readers'] });
  });

  it('entitlements: one classification refuses fixed roles, public, the agent\'s memberships and roles inside them', () => {
    const list = s.listEntitlements().sql;
    const state = s.entitlementState('x').sql;
    // The same CTE in both statements: one definition of an entitlement.
    const cte = (sql: string) => sql.slice(0, sql.indexOf('select c.')).trimEnd();
    expect(cte(list)).toBe(cte(state));
    expect(list).toMatch(/is_fixed_role = 1 or name = 'public'/);
    expect(list).toMatch(/select database_principal_id\(\)/);
    expect(list).toMatch(/join barred b on rm\.role_principal_id = b\.principal_id/);
    for (const key of ['user', 'fixed', 'agent', 'inherits']) expect(list).toContain(`then '${key}'`);
  });

  it('changes quote principal names as identifiers, brackets doubled', () => {
    expect(s.grant('alice', 'readers')).toEqual({ sql: 'alter role [readers] add member [alice]', bindings: [] });
    expect(s.revoke('alice', 'readers')).toEqual({ sql: 'alter role [readers] drop member [alice]', bindings: [] });
    expect(s.grant(`x]; drop table t; --`, 'r?x.y')).toEqual({ sql: 'alter role [r?x.y] add member [x]]; drop table t; --]', bindings: [] });
    expect(s.setEnabled('alice', { login: 'CORP\\alice' }, false)).toEqual({ sql: 'alter login [CORP\\alice] disable', bindings: [] });
    expect(s.setEnabled('alice', { login: 'alice' }, true)).toEqual({ sql: 'alter login [alice] enable', bindings: [] });
    expect(() => s.setEnabled('contained', { login: null }, true)).toThrow(expect.objectContaining({ code: 'invalid_request' }));
  });

  it('queries-model statements bind named parameters natively', () => {
    expect(db.compile('update app_users set active = :enabled where id = :accountId and active <> :enabled', { enabled: false, accountId: 'a' })).toEqual({
      sql: 'update app_users set active = @p0 where id = @p1 and active <> @p2',
      bindings: [false, 'a', false],
    });
  });

  it('maps the config to tedious options: encrypt on, certificate checked, statement timeout as requestTimeout', () => {
    const cfg = db.knex.client.config as { connection: { options: Record<string, unknown> } };
    expect(cfg.connection.options).toMatchObject({ encrypt: true, trustServerCertificate: false, requestTimeout: 300_000, connectTimeout: 10_000 });
  });
});

describe('mssql: connection failure', () => {
  it('a closed port is a retryable unavailable, quickly', async () => {
    const port = CLOSED_PORT;
    const c = createSqlConnector('ms', { kind: 'mssql', connection: { host: '127.0.0.1', port, user: 'sa', password: 'Not-Used-Pw-123' }, connectTimeoutMs: 3000 }, sqlDeps());
    try {
      const err = await c.checkResource({}, opContext().ctx).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code: 'unavailable', retryable: true });
      expect(String((err as Error).message)).not.toContain('Not-Used-Pw-123');
    } finally {
      await c.close();
    }
  });
});

// A real SQL Server only when one is given: without MSSQL_URL the suite is not registered at all.
if (process.env.MSSQL_URL) conformanceSuite(mssqlTarget(process.env.MSSQL_URL));
