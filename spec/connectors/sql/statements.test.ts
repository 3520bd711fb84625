import { afterAll, describe, expect, it } from '@jest/globals';
import { SqlDatabase } from '../../../lib/connectors/sql/database.js';
import { parseOptions } from '../../../lib/connectors/sql/index.js';
import { compiler } from '../../../lib/connectors/sql/models.js';
import { mysqlStatements } from '../../../lib/connectors/sql/native/mysql.js';
import { postgresStatements } from '../../../lib/connectors/sql/native/postgres.js';
import { silentLogger } from '../../../lib/log/index.js';
import { systemClock } from '../../../lib/util/clock.js';

/** Native statements compiled offline (no connection): the forms the live suites cannot reach, such as MySQL 8's. */
const db = (kind: string) =>
  new SqlDatabase(parseOptions('s', { kind, connection: { host: 'db.invalid' } }, { readSecret: () => 'x', env: {} }), { log: silentLogger(), clock: systemClock });

describe('native statements, offline', () => {
  const my = db('mysql');
  const pg = db('postgres');
  afterAll(async () => {
    await my.close();
    await pg.close();
  });

  it('MySQL 8 uses role_edges and account-form role ids', () => {
    const s = mysqlStatements(compiler(my), 'mysql');
    expect(s.listGrants().sql).toMatch(/from mysql\.role_edges/);
    expect(s.isMember(`'alice'@'%'`, `'readers'@'%'`)).toEqual({
      sql: 'select 1 as found from mysql.role_edges where TO_USER = ? and TO_HOST = ? and FROM_USER = ? and FROM_HOST = ?',
      bindings: ['alice', '%', 'readers', '%'],
    });
    expect(s.grant(`'alice'@'%'`, `'readers'@'%'`)).toEqual({ sql: `grant 'readers'@'%' to 'alice'@'%'`, bindings: [] });
    expect(s.setEnabled(`'o''brien'@'10.%'`, {}, false)).toEqual({ sql: `alter user 'o''brien'@'10.%' account lock`, bindings: [] });
    expect(s.entitlement({ user: 'readers', host: '%' })).toEqual({ id: `'readers'@'%'`, uid: null, name: 'readers', kind: 'role', description: null });
    // One classification for listing and for the grant-time check, over role_edges, default_roles and the privilege tables.
    const state = s.entitlementState(`'readers'@'%'`);
    expect(state).toEqual({ sql: expect.stringMatching(/select c\.refused from classified c where c\.user = \? and c\.host = \?$/), bindings: ['readers', '%'] });
    const list = s.listEntitlements().sql;
    expect(list.slice(0, list.lastIndexOf('select c.'))).toBe(state.sql.slice(0, state.sql.lastIndexOf('select c.')));
    for (const t of ['mysql.role_edges', 'mysql.default_roles', 'mysql.global_grants', 'Super_priv', 'Create_user_priv', 'File_priv']) expect(list).toContain(t);
  });

  it('MariaDB grants a quoted role identifier to two quoted literals', () => {
    const s = mysqlStatements(compiler(my), 'mariadb');
    expect(s.grant(`'alice'@'%'`, 'read`ers')).toEqual({ sql: "grant `read``ers` to 'alice'@'%'", bindings: [] });
    expect(s.revoke('bob@localhost', 'r')).toEqual({ sql: "revoke `r` from 'bob'@'localhost'", bindings: [] });
    expect(() => s.grant(`x\\`, 'r')).toThrow(expect.objectContaining({ code: 'invalid_request' }));
  });

  it('PostgreSQL quotes names with dots, quotes and question marks verbatim', () => {
    const s = postgresStatements(compiler(pg));
    expect(s.grant('john.doe', 'a"b?c')).toEqual({ sql: 'grant "a""b?c" to "john.doe"', bindings: [] });
    expect(s.setEnabled('x', {}, true)).toEqual({ sql: 'alter role "x" login', bindings: [] });
    expect(s.accountState('john.doe')).toEqual({ sql: expect.stringContaining('where rolname = $1'), bindings: ['john.doe'] });
  });
});
