import { describe, expect, it } from '@jest/globals';
import { classify, mapSqlError } from '../../../lib/connectors/sql/errors.js';
import { formatMysqlAccount, mysqlString, parseMysqlAccount, quoteIdent } from '../../../lib/connectors/sql/ident.js';
import { bindParams, namedParams } from '../../../lib/connectors/sql/params.js';
import { ColumnMap, jsonValue, truthy } from '../../../lib/connectors/sql/records.js';
import { OutpostError } from '../../../lib/util/errors.js';
import { registerSecret } from '../../../lib/util/redact.js';

describe('named parameters', () => {
  it('finds :name values as knex binds them, not casts, escapes or literals', () => {
    expect(namedParams(`select :a::int, :b, \\:c, '12:30', :a from t where x = :_d`)).toEqual({ values: ['a', 'b', '_d'], identifiers: [] });
    expect(namedParams('select :col: from t').identifiers).toEqual(['col']);
  });
  it('binds exactly the parameters a statement uses and names the others', () => {
    expect(bindParams('q', 'select :a, :b', { a: 1, b: null })).toEqual({ a: 1, b: null });
    expect(() => bindParams("query 'q'", 'select :a, :b', { a: 1 })).toThrow("query 'q': missing parameter :b");
    expect(() => bindParams("query 'q'", 'select :a', { a: 1, x: 's3cret', y: 2 })).toThrow("query 'q': unexpected parameters :x, :y");
    try {
      bindParams('q', 'select :a', { b: 'value-never-shown' });
    } catch (err) {
      expect(err).toMatchObject({ code: 'invalid_request', retryable: false });
      expect((err as Error).message).not.toContain('value-never-shown');
    }
  });
});

describe('error tables', () => {
  it.each([
    ['postgres', { code: '57P01' }, 'unavailable', true],
    ['postgres', { code: '08006' }, 'unavailable', true],
    ['postgres', { code: '40P01' }, 'conflict', true],
    ['postgres', { code: '40001' }, 'conflict', true],
    ['postgres', { code: '55P03' }, 'busy', true],
    ['postgres', { code: '42501' }, 'permission_denied', false],
    ['postgres', { code: '28P01' }, 'invalid_credentials', false],
    ['postgres', { code: '42601' }, 'invalid_request', false],
    ['postgres', { code: '42704' }, 'not_found', false],
    ['postgres', { code: 'ECONNREFUSED' }, 'unavailable', true],
    ['mysql', { errno: 1213 }, 'conflict', true],
    ['mysql', { errno: 1205 }, 'busy', true],
    ['mysql', { errno: 1044 }, 'permission_denied', false],
    ['mysql', { errno: 1045 }, 'invalid_credentials', false],
    ['mysql', { errno: 1142 }, 'permission_denied', false],
    ['mysql', { errno: 1227 }, 'permission_denied', false],
    ['mysql', { errno: 1064 }, 'invalid_request', false],
    ['mysql', { errno: 1396 }, 'not_found', false],
    ['mysql', { errno: 1969 }, 'timeout', true],
    ['mysql', { code: 'PROTOCOL_CONNECTION_LOST' }, 'unavailable', true],
    ['mssql', { code: 'EREQUEST', number: 1205 }, 'conflict', true],
    ['mssql', { code: 'EREQUEST', number: 229 }, 'permission_denied', false],
    ['mssql', { code: 'EREQUEST', number: 15151 }, 'not_found', false],
    ['mssql', { code: 'ELOGIN' }, 'invalid_credentials', false],
    ['mssql', { code: 'ESOCKET' }, 'unavailable', true],
    ['mssql', { code: 'ETIMEOUT' }, 'timeout', true],
    ['sqlite', { code: 'SQLITE_BUSY' }, 'busy', true],
    ['sqlite', { code: 'SQLITE_CONSTRAINT_PRIMARYKEY' }, 'conflict', false],
    ['postgres', { name: 'KnexTimeoutError', message: 'Knex: Timeout acquiring a connection' }, 'busy', true],
    ['postgres', { message: 'The server does not support SSL connections' }, 'tls_error', false],
    ['postgres', { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }, 'tls_error', false],
    ['postgres', { message: 'Connection terminated unexpectedly' }, 'unavailable', true],
  ] as const)('%s %j → %s', (kind, err, code, retryable) => {
    expect(classify(kind, err)).toEqual({ code, retryable });
  });

  it('keeps the server\'s text, never a driver\'s, never rewrites by value, and passes OutpostErrors through', () => {
    registerSecret('Leaky-Pass-777');
    const denied = "Access denied for user 'u'@'localhost' (using password: YES)";
    const e = mapSqlError('mysql', Object.assign(new Error(denied), { errno: 1045, code: 'ER_ACCESS_DENIED_ERROR', sqlState: '28000' }));
    expect(e).toMatchObject({ code: 'invalid_credentials', retryable: false, message: `mysql ER_ACCESS_DENIED_ERROR: ${denied}` });
    // MariaDB 1698: access denied for a user (auth plugin), not an internal error.
    const socket = mapSqlError('mysql', Object.assign(new Error("Access denied for user 'root'@'localhost'"), { errno: 1698, code: 'ER_ACCESS_DENIED_NO_PASSWORD_ERROR', sqlState: '28000' }));
    expect(socket).toMatchObject({ code: 'invalid_credentials', retryable: false });
    // A server message is not rewritten even when it holds a registered value (it names a role, here).
    const role = mapSqlError('postgres', Object.assign(new Error('role "Leaky-Pass-777" does not exist'), { code: '42704' }));
    expect(role.message).toBe('postgres 42704: role "Leaky-Pass-777" does not exist');
    // Driver-level text may quote the connection string: a fixed text by code instead.
    const unknown = mapSqlError('postgres', new Error('weird postgres://u:Leaky-Pass-777@db/x'));
    expect(unknown).toMatchObject({ code: 'internal', retryable: false, message: 'postgres Error: unexpected driver error' });
    const mine = new OutpostError('not_found', 'x');
    expect(mapSqlError('postgres', mine)).toBe(mine);
    const agg = Object.assign(new AggregateError([Object.assign(new Error('connect ECONNREFUSED ::1:5432'), { code: 'ECONNREFUSED' })], ''), {});
    expect(mapSqlError('postgres', agg)).toMatchObject({ code: 'unavailable', retryable: true, message: 'postgres ECONNREFUSED: the database is unreachable or closed the connection' });
  });
});

describe('identifiers and MySQL accounts', () => {
  it('quotes by doubling the quote character of each dialect', () => {
    expect(quoteIdent('postgres', 'a"b.c d')).toBe('"a""b.c d"');
    expect(quoteIdent('sqlite', '*')).toBe('"*"');
    expect(quoteIdent('mysql', 'a`b')).toBe('`a``b`');
    expect(quoteIdent('mssql', 'a]b[')).toBe('[a]]b[]');
    expect(() => quoteIdent('postgres', 'a\0b')).toThrow(expect.objectContaining({ code: 'invalid_request' }));
  });
  it("parses and formats 'user'@'host' account ids", () => {
    expect(parseMysqlAccount(`'o''brien'@'10.%'`)).toEqual({ user: "o'brien", host: '10.%' });
    expect(parseMysqlAccount('alice@localhost')).toEqual({ user: 'alice', host: 'localhost' });
    expect(parseMysqlAccount('a@b@c')).toEqual({ user: 'a@b', host: 'c' });
    expect(parseMysqlAccount('alice')).toEqual({ user: 'alice', host: '%' });
    expect(() => parseMysqlAccount(`'x'@'%'; drop user x; --`)).toThrow(expect.objectContaining({ code: 'invalid_request' }));
    expect(formatMysqlAccount("o'brien", '%')).toBe(`'o''brien'@'%'`);
    expect(parseMysqlAccount(formatMysqlAccount("a'@'b", "c'd"))).toEqual({ user: "a'@'b", host: "c'd" });
    expect(mysqlString("it's")).toBe(`'it''s'`);
    expect(() => mysqlString("x\\'")).toThrow(expect.objectContaining({ code: 'invalid_request' }));
  });
});

describe('records', () => {
  it('turns column values into JSON and truthiness as databases spell it', () => {
    expect(jsonValue(new Date('2026-01-02T03:04:05Z'))).toBe('2026-01-02T03:04:05.000Z');
    expect(jsonValue(Buffer.from('hi'))).toBe('aGk=');
    expect(jsonValue(12345678901234567890n)).toBe('12345678901234567890');
    expect([true, 1, '1', 't', 'TRUE', 'Y', 'yes', Buffer.from([1])].map(truthy)).toEqual(Array(8).fill(true));
    expect([false, 0, '0', 'f', 'N', null, undefined, Buffer.from([0])].map(truthy)).toEqual(Array(8).fill(false));
  });
  it('maps columns to records; a missing id column is a config error', () => {
    const m = new ColumnMap({ id: 'login', enabled: 'active' });
    expect(m.account({ login: 7, active: 0, email: 'a@b', extra: new Date(0) })).toEqual({
      id: '7', uid: null, name: null, email: 'a@b', enabled: false, attributes: { extra: '1970-01-01T00:00:00.000Z' },
    });
    expect(m.account({ login: 'x' }).enabled).toBe(true);
    expect(m.entitlement({ login: 'g', kind: 'role' }, 'group').kind).toBe('role');
    expect(() => m.account({ name: 'x' })).toThrow(expect.objectContaining({ code: 'config_error' }));
  });
});
