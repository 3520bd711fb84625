import { createHash, createHmac } from 'node:crypto';
import { afterAll, describe, expect, it } from '@jest/globals';
import { decodeCursor, encodeCursor } from '../../../lib/connectors/sql/cursor.js';
import { SqlDatabase } from '../../../lib/connectors/sql/database.js';
import { parseOptions } from '../../../lib/connectors/sql/index.js';
import { compiler } from '../../../lib/connectors/sql/models.js';
import { mssqlAccountStatements } from '../../../lib/connectors/sql/native/mssql-accounts.js';
import { mysqlAccountStatements } from '../../../lib/connectors/sql/native/mysql-accounts.js';
import { postgresAccountStatements } from '../../../lib/connectors/sql/native/postgres-accounts.js';
import { mssqlHashedPassword, mysqlNativeHash, saslPrep, SCRAM_VERIFIER, scramVerifier } from '../../../lib/connectors/sql/verifiers.js';
import { silentLogger } from '../../../lib/log/index.js';
import { systemClock } from '../../../lib/util/clock.js';

const env = { readSecret: () => 'x', env: {} };
const db = (kind: string) => new SqlDatabase(parseOptions('s', { kind, connection: { host: 'db.invalid', user: 'u' } }, env), { log: silentLogger(), clock: systemClock });
const PW = 'Offline-Plain-Pw-5d6e';

describe('password verifiers', () => {
  it('SCRAM-SHA-256 matches the RFC 7677 exchange (user/pencil): ServerSignature and ClientProof check out', () => {
    const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');
    const v = scramVerifier('pencil', { salt });
    expect(v).toMatch(SCRAM_VERIFIER);
    const [, keys] = v.split('$').slice(1) as [string, string];
    const [storedKey, serverKey] = keys.split(':').map((k) => Buffer.from(k, 'base64')) as [Buffer, Buffer];
    const auth =
      'n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,' +
      'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';
    expect(createHmac('sha256', serverKey).update(auth).digest('base64')).toBe('6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=');
    const proof = Buffer.from('dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=', 'base64');
    const signature = createHmac('sha256', storedKey).update(auth).digest();
    const clientKey = Buffer.from(proof.map((b, i) => b ^ (signature[i] as number)));
    expect(createHash('sha256').update(clientKey).digest()).toEqual(storedKey);
  });

  it('SCRAM: a random 16-byte salt each time, 4096 iterations by default, bounded iterations', () => {
    const a = scramVerifier(PW);
    expect(a).toMatch(/^SCRAM-SHA-256\$4096:[A-Za-z0-9+/]{22}==\$/);
    expect(scramVerifier(PW)).not.toBe(a);
    expect(scramVerifier(PW, { iterations: 10_000 })).toMatch(/^SCRAM-SHA-256\$10000:/);
    expect(() => scramVerifier(PW, { iterations: 1000 })).toThrow(expect.objectContaining({ code: 'config_error' }));
    expect(a).not.toContain(PW);
  });

  it('SASLprep as PostgreSQL and node-postgres apply it: ASCII as is, else spaces mapped, soft hyphens dropped, NFKC', () => {
    expect(saslPrep('plain ascii \x01')).toBe('plain ascii \x01');
    expect(saslPrep('a\u00A0b\u00ADc\uFB01')).toBe('a bcfi');
  });

  it('mysql_native_password is *HEX(SHA1(SHA1(pw)))', () => {
    expect(mysqlNativeHash('password')).toBe('*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19');
  });

  it('SQL Server hashed form: 0x0200, 4-byte salt, SHA-512 of UTF-16LE password + salt', () => {
    const salt = Buffer.from('01020304', 'hex');
    const digest = createHash('sha512').update(Buffer.concat([Buffer.from(PW, 'utf16le'), salt])).digest('hex').toUpperCase();
    expect(mssqlHashedPassword(PW, salt)).toBe(`0x020001020304${digest}`);
  });
});

describe('account statements, offline', () => {
  const pg = db('postgres');
  const my = db('mysql');
  const ms = db('mssql');
  afterAll(async () => {
    await Promise.all([pg.close(), my.close(), ms.close()]);
  });
  const opts = { host: '10.0.%', scramIterations: 4096 };

  it('PostgreSQL: quoted names, a verifier literal, no plaintext; lookups bound', () => {
    const s = postgresAccountStatements(compiler(pg), opts);
    const [create] = s.create('o"k.x', { enabled: true, password: PW });
    expect(create!.sql).toMatch(/^create role "o""k\.x" with login nosuperuser nocreatedb nocreaterole noreplication nobypassrls password 'SCRAM-SHA-256\$4096:[^']+'$/);
    expect(create!.bindings).toEqual([]);
    expect(create!.sql).not.toContain(PW);
    expect(s.setPassword('a', PW, false, {})[0]!.sql).toMatch(/^alter role "a" with password 'SCRAM-SHA-256\$/);
    expect(() => s.setPassword('a', PW, true, {})).toThrow(expect.objectContaining({ code: 'invalid_request' }));
    expect(s.drop('a', {})).toEqual([{ sql: 'drop role "a"', bindings: [] }]);
    expect(s.targetState("x'; --")).toEqual({ sql: expect.stringMatching(/select t\.refused from target t where t\.id = \$1$/), bindings: ["x'; --"] });
    expect(s.update('a', { connectionLimit: '7', validUntil: s.normalize('validUntil', '2030-01-01') }, {})).toEqual([
      { sql: 'alter role "a" with connection limit 7', bindings: [] },
      { sql: `alter role "a" with valid until '2030-01-01T00:00:00.000Z'`, bindings: [] },
    ]);
    expect(() => s.normalize('validUntil', "2030-01-01'; drop role x; --")).toThrow(expect.objectContaining({ code: 'invalid_request' }));
    expect(s.listGrantsNested().sql).toMatch(/with recursive eff\(member, roleid, via\)[\s\S]*union\n/);
  });

  it('MySQL 8: IDENTIFIED WITH mysql_native_password AS the hash; target rules over global_grants; nested over role_edges', () => {
    const s = mysqlAccountStatements(compiler(my), 'mysql', opts);
    expect(s.accountIdOf('bob')).toBe(`'bob'@'10.0.%'`);
    expect(s.create(`'bob'@'10.0.%'`, { enabled: false, password: PW })).toEqual([
      { sql: `create user 'bob'@'10.0.%' identified with mysql_native_password as '${mysqlNativeHash(PW)}' account lock`, bindings: [] },
    ]);
    expect(s.setPassword(`'bob'@'%'`, PW, true, {}).map((x) => x.sql)).toEqual([
      `alter user 'bob'@'%' identified with mysql_native_password as '${mysqlNativeHash(PW)}'`,
      `alter user 'bob'@'%' password expire`,
    ]);
    expect(s.targetState(`'bob'@'%'`).sql).toContain('mysql.global_grants');
    expect(s.listGrantsNested().sql).toContain('mysql.role_edges');
    expect(() => s.accountIdOf('x'.repeat(33))).toThrow(expect.objectContaining({ code: 'invalid_request' }));
    expect(() => s.accountIdOf('a\\b')).toThrow(expect.objectContaining({ code: 'invalid_request' }));
  });

  it('MariaDB: IDENTIFIED VIA mysql_native_password USING the hash; limits in one ALTER USER', () => {
    const s = mysqlAccountStatements(compiler(my), 'mariadb', opts);
    expect(s.setPassword(`'o''b'@'%'`, PW, false, {})).toEqual([
      { sql: `alter user 'o''b'@'%' identified via mysql_native_password using '${mysqlNativeHash(PW)}'`, bindings: [] },
    ]);
    expect(s.update(`'b'@'%'`, { maxUserConnections: '2', maxQueriesPerHour: '0' }, {})).toEqual([
      { sql: `alter user 'b'@'%' with max_user_connections 2 max_queries_per_hour 0`, bindings: [] },
    ]);
    expect(() => s.normalize('maxUserConnections', '-1')).toThrow(expect.objectContaining({ code: 'invalid_request' }));
  });

  it('SQL Server: login + user, a HASHED password, DROP USER, mustChange refused (no server here)', () => {
    const s = mssqlAccountStatements(compiler(ms));
    const create = s.create('new]user', { enabled: false, password: PW });
    expect(create.map((x) => x.sql)).toEqual([
      expect.stringMatching(/^create login \[new]]user] with password = 0x0200[0-9A-F]{136} hashed$/),
      'create user [new]]user] for login [new]]user]',
      'alter login [new]]user] disable',
    ]);
    expect(create.map((x) => x.sql).join()).not.toContain(PW);
    expect(s.setPassword('u', PW, false, { login: 'CORP\\u' })[0]!.sql).toMatch(/^alter login \[CORP\\u] with password = 0x0200[0-9A-F]{136} hashed$/);
    expect(() => s.setPassword('u', PW, true, { login: 'u' })).toThrow(expect.objectContaining({ code: 'invalid_request' }));
    expect(() => s.setPassword('u', PW, false, { login: null })).toThrow(expect.objectContaining({ code: 'invalid_request' }));
    expect(s.drop('u', {})).toEqual([{ sql: 'drop user [u]', bindings: [] }]);
    expect(s.update('u', { defaultSchema: 'sales' }, {})).toEqual([{ sql: 'alter user [u] with default_schema = [sales]', bindings: [] }]);
    const target = s.targetState('u');
    expect(target).toEqual({ sql: expect.stringContaining('and dp.name = @p0'), bindings: ['u'] });
    for (const t of ['database_principal_id()', 'suser_sname()', 'sys.server_role_members', "'CONTROL SERVER'", "'db_owner'", 'maxrecursion']) expect(target.sql).toContain(t);
    expect(s.getAccount('u')).toEqual({ sql: expect.stringContaining('and dp.name = @p0'), bindings: ['u'] });
    expect(s.listGrantsNested().sql).toMatch(/where e\.depth < 32/);
  });
});

describe('delta cursor (queries model)', () => {
  const c = { resource: 'app', fingerprint: 'abc', watermark: '2026-12-01T00:00:00.000Z' };
  it('round-trips', () => {
    expect(decodeCursor(encodeCursor(c))).toEqual(c);
  });
  it.each([
    ['no prefix', 'eyJyIjoiYXBwIn0'],
    ['bad characters', 'sq1.a+b/c='],
    ['not JSON', `sq1.${Buffer.from('nope').toString('base64url')}`],
    ['an extra key', `sq1.${Buffer.from(JSON.stringify({ r: 'a', h: 'b', w: 'c', x: 1 })).toString('base64url')}`],
    ['a non-string field', `sq1.${Buffer.from(JSON.stringify({ r: 'a', h: 'b', w: 5 })).toString('base64url')}`],
    ['an array', `sq1.${Buffer.from('[1]').toString('base64url')}`],
    ['a non-canonical encoding', `${encodeCursor(c)}A`],
  ])('refuses %s without echoing it', (_what, raw) => {
    expect(() => decodeCursor(raw)).toThrow(expect.objectContaining({ code: 'invalid_request', message: 'since: not a cursor made by a SQL resource listing' }));
  });
});

describe('accounts config', () => {
  const parse = (kind: string, accounts: unknown, extra: Record<string, unknown> = {}) =>
    parseOptions('r', { kind, connection: { host: 'db.invalid' }, accounts, ...extra }, env);
  it('defaults and accepted keys', () => {
    expect(parse('postgres', undefined).accounts).toEqual({ updatable: [], host: '%', scramIterations: 4096, deletions: 'unsupported' });
    expect(parse('mysql', { host: '10.%', updatable: ['maxUserConnections'] }).accounts).toMatchObject({ host: '10.%', updatable: ['maxUserConnections'] });
  });
  it.each([
    ['postgres', { nope: 1 }, /accounts\.nope: unknown key/],
    ['postgres', { host: 'x' }, /accounts\.host: applies to mysql only/],
    ['mysql', { scramIterations: 5000 }, /accounts\.scramIterations: applies to postgres only/],
    ['postgres', { scramIterations: 100 }, /accounts\.scramIterations: must be an integer/],
    ['postgres', { updatable: ['password'] }, /accounts\.updatable\.0: names a field no update may set/],
    ['postgres', { updatable: ['name'] }, /accounts\.updatable\.0: names a field no update may set/],
    ['postgres', { updatable: ['a-b'] }, /accounts\.updatable\.0: must match/],
    ['postgres', { deletions: 'maybe' }, /accounts\.deletions/],
    ['mysql', { host: 'a\\b' }, /accounts\.host/],
  ])('%s %j is a config_error', (kind, accounts, why) => {
    expect(() => parse(kind, accounts)).toThrow(expect.objectContaining({ code: 'config_error', message: expect.stringMatching(why) }));
  });
  it('queries statements may use the allow-listed attributes, nothing else', () => {
    const statements = { listAccounts: 'select 1', updateAccount: 'update u set dept = :dept where id = :accountId' };
    expect(() => parseOptions('q', { kind: 'sqlite', connection: { filename: ':memory:' }, statements }, env)).toThrow(expect.objectContaining({ message: expect.stringContaining('unknown parameter :dept') }));
    expect(parseOptions('q', { kind: 'sqlite', connection: { filename: ':memory:' }, statements, accounts: { updatable: ['dept'] } }, env).statements.updateAccount).toBeDefined();
  });
});
