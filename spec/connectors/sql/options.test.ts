import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { readSecretFile } from '../../../lib/config/secrets.js';
import { parseOptions } from '../../../lib/connectors/sql/index.js';
import { redact } from '../../../lib/util/redact.js';

const dir = mkdtempSync(join(tmpdir(), 'outpost-sqlopts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const deps = (env: Record<string, string> = {}) => ({ readSecret: (p: string) => readSecretFile(p), env });
const parse = (raw: Record<string, unknown>, env: Record<string, string> = {}) => parseOptions('hr', raw, deps(env));
const configError = (raw: Record<string, unknown>, message: string | RegExp) => {
  let err: unknown;
  try {
    parse(raw);
  } catch (e) {
    err = e;
  }
  expect(err).toMatchObject({ code: 'config_error' });
  if (typeof message === 'string') expect((err as Error).message).toBe(message);
  else expect((err as Error).message).toMatch(message);
  return err as Error;
};

describe('sql resource options', () => {
  it('applies the documented defaults', () => {
    const o = parse({ kind: 'postgres', connection: { host: 'db', user: 'u', database: 'hr' } });
    expect(o).toMatchObject({
      model: 'native',
      pool: { max: 4, acquireTimeoutMs: 30_000 },
      statementTimeoutMs: 300_000,
      connectTimeoutMs: 10_000,
      pageSize: 500,
      tls: null,
      encrypt: true,
      entitlementKind: 'group',
      connection: { host: 'db', user: 'u', database: 'hr', port: undefined, password: undefined },
    });
    const s = parse({ kind: 'sqlite', connection: { filename: ':memory:' }, statements: { listAccounts: 'select 1 as id' } });
    expect(s).toMatchObject({ model: 'queries', pool: { max: 1 } });
    expect(parse({ kind: 'mysql', tls: true }).tls).toEqual({ caFile: undefined, rejectUnauthorized: true, serverName: undefined });
  });

  it('reads the password from passwordFile, passwordEnv, password or the url, and only one of them', () => {
    const file = join(dir, 'pw');
    writeFileSync(file, 'File-Secret-Pw-1\n');
    expect(parse({ kind: 'postgres', connection: { passwordFile: file } }).connection.password).toBe('File-Secret-Pw-1');
    expect(parse({ kind: 'postgres', connection: { passwordEnv: 'HR_PW' } }, { HR_PW: 'Env-Secret-Pw-2' }).connection.password).toBe('Env-Secret-Pw-2');
    const url = parse({ kind: 'postgres', connection: { url: 'postgresql://svc:Url%40Secret-3@db.corp:5433/hr' } });
    expect(url.connection).toMatchObject({ host: 'db.corp', port: 5433, user: 'svc', database: 'hr', password: 'Url@Secret-3' });
    // Every form is registered for redaction.
    expect(redact('x File-Secret-Pw-1 Env-Secret-Pw-2 Url@Secret-3')).toBe('x [REDACTED] [REDACTED] [REDACTED]');
    configError({ kind: 'postgres', connection: { password: 'a-b-c-d', passwordFile: file } }, 'resources.hr.connection.password: set only one of password, passwordFile or passwordEnv');
    const twice = configError({ kind: 'postgres', connection: { url: 'postgres://u:In-Url-Pw-4@db/hr', passwordFile: file } }, 'resources.hr.connection.password: set only one of password, passwordFile, passwordEnv or a password in url');
    expect(twice.message).not.toContain('In-Url-Pw-4');
    const missing = configError({ kind: 'postgres', connection: { passwordEnv: 'NOPE_PW' } }, 'resources.hr.connection.passwordEnv: environment variable NOPE_PW is not set');
    expect(missing.message).not.toContain('undefined');
    configError({ kind: 'postgres', connection: { passwordFile: join(dir, 'absent') } }, /cannot read .*absent: ENOENT/);
  });

  it('never echoes a bad url (it may carry a password)', () => {
    const err = configError({ kind: 'postgres', connection: { url: 'postgres://u:Bad-Url-Pw-9@[bad' } }, 'resources.hr.connection.url: is not a valid URL');
    expect(err.message).not.toContain('Bad-Url-Pw-9');
    configError({ kind: 'postgres', connection: { url: 'mysql://u@h/db' } }, 'resources.hr.connection.url: must be a postgres:// or postgresql:// URL');
  });

  it('names the key of every mistake', () => {
    configError({ kind: 'oracle' }, 'resources.hr.kind: must be one of postgres, mysql, mssql, sqlite');
    configError({ kind: 'postgres', hots: 'x' }, 'resources.hr.hots: unknown key');
    configError({ kind: 'postgres', connection: { hots: 'x' } }, 'resources.hr.connection.hots: unknown key');
    configError({ kind: 'postgres', model: 'graph' }, 'resources.hr.model: must be "native" or "queries"');
    configError({ kind: 'postgres', pool: { max: 0 } }, 'resources.hr.pool.max: must be an integer in [1, 100]');
    configError({ kind: 'postgres', statementTimeoutMs: -1 }, 'resources.hr.statementTimeoutMs: must be an integer in [0, 86400000]');
    configError({ kind: 'postgres', encrypt: true }, 'resources.hr.encrypt: applies to mssql only (use tls)');
    configError({ kind: 'postgres', tls: { caFile: 'x', verify: false } }, 'resources.hr.tls.verify: unknown key');
    configError({ kind: 'sqlite', connection: {} , statements: { listAccounts: 'select 1' } }, 'resources.hr.connection.filename: is required for sqlite');
    configError({ kind: 'postgres', connection: { filename: 'x.db' } }, 'resources.hr.connection.filename: applies to sqlite only, not postgres');
  });

  it('checks statements and named queries at load time', () => {
    configError({ kind: 'postgres', model: 'queries' }, 'resources.hr.statements: model "queries" needs at least one statement');
    configError({ kind: 'postgres', statements: { listAccounts: 'select 1' } }, 'resources.hr.statements: apply to model "queries" only');
    configError({ kind: 'postgres', model: 'queries', statements: { deleteAll: 'delete from t' } }, /resources\.hr\.statements\.deleteAll: unknown operation/);
    configError(
      { kind: 'postgres', model: 'queries', statements: { grant: 'insert into m values (:accountId, :enabled)' } },
      'resources.hr.statements.grant: unknown parameter :enabled; this statement may use :accountId, :entitlementId',
    );
    configError({ kind: 'postgres', model: 'queries', statements: { listAccounts: 'select * from t where a = :x' } }, /may use no parameters/);
    configError({ kind: 'postgres', queries: { 'bad name!': 'select 1' } }, /resources\.hr\.queries\.bad name!: query names must match/);
    configError({ kind: 'postgres', queries: { q: 'select * from :table:' } }, /identifier bindings \(:table:\) are not allowed/);
    configError({ kind: 'postgres', queries: { q: '' } }, 'resources.hr.queries.q: must be a non-empty SQL string');
    expect(parse({ kind: 'postgres', queries: { q: 'select :a::int, \\:lit, \'12:30\'' } }).queries.q).toContain('::int');
  });
});
