import { describe, expect, it } from '@jest/globals';
import { compileEntitlements, compileGlob } from '../../lib/connectors/entitlements.js';
import { AttributePolicy } from '../../lib/connectors/ldap/attributes.js';
import { parseOptions } from '../../lib/connectors/sql/index.js';
import { OutpostError } from '../../lib/util/errors.js';

const sql = (entitlements: unknown, kind = 'postgres') =>
  parseOptions('db', { kind, connection: { host: 'db.invalid' }, entitlements }, { readSecret: () => 'x', env: {} });

describe('glob patterns', () => {
  it.each([
    ['app_*', 'app_read', true],
    ['app_*', 'app_', true],
    ['app_*', 'x_app_read', false], // anchored at the start
    ['*_read', 'app_read_x', false], // and at the end
    ['app_?', 'app_r', true],
    ['app_?', 'app_rw', false],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'axxbyyc', true],
    ['a*b*c', 'acb', false],
    ['*', '', true],
    ['', '', true],
    ['x', 'X', false],
    ['app\\*', 'app*', true],
    ['app\\*', 'apps', false],
    ['a\\?', 'a?', true],
    ['a\\?', 'ab', false],
    ['a\\\\b', 'a\\b', true],
    ['*.*', 'john.doe', true],
    ['[ab]', 'a', false], // no character classes: brackets are literal
    ['[ab]', '[ab]', true],
    ['(a|b)+', 'aa', false], // no regular expressions
    ['cn=app-*,ou=groups,dc=x', 'cn=app-1,ou=groups,dc=x', true],
    ['é?', 'éü', true], // characters, not UTF-16 units
    ['?', '😀', true],
  ])('%s matches %s: %s', (pattern, text, expected) => {
    expect(compileGlob(pattern)(text)).toBe(expected);
  });

  it('folds case only where asked', () => {
    expect(compileGlob('CN=Staff,*', { caseInsensitive: true })('cn=STAFF,ou=x')).toBe(true);
    expect(compileGlob('CN=Staff,*')('cn=STAFF,ou=x')).toBe(false);
  });

  it('a dangling escape is an error', () => {
    expect(() => compileGlob('abc\\')).toThrow('unpaired');
  });

  it('hostile patterns over 1 MB ids end (no backtracking blow-up)', () => {
    const a = 'a'.repeat(1_000_000);
    expect(compileGlob('*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b')(a)).toBe(false);
    expect(compileGlob(`*${'a'.repeat(40)}b*`)(a)).toBe(false);
    expect(compileGlob(`*${'?'.repeat(30)}b`)(a + 'b')).toBe(true);
    expect(compileGlob('a*a*a*a*a')(a)).toBe(true);
  });
});

describe('the entitlements allow-list', () => {
  it('defaults to everything; exclude wins over include', () => {
    expect(compileEntitlements('r', undefined).allows('anything')).toBe(true);
    const rules = compileEntitlements('r', { include: ['app_*', 'ops'], exclude: ['*_admin'] });
    expect(['app_read', 'ops', 'app_admin', 'other'].filter((id) => rules.allows(id))).toEqual(['app_read', 'ops']);
    expect(compileEntitlements('r', { exclude: ['x'] }).allows('y')).toBe(true);
    expect(compileEntitlements('r', { include: [] }).allows('y')).toBe(false);
  });

  it('refusals are forbidden, name the list and never echo the id', () => {
    const rules = compileEntitlements('hr-db', { include: ['app_*'], exclude: ['*_admin'] });
    for (const [id, list] of [['hunter2-guess', 'include'], ['app_admin', 'exclude']] as const) {
      let err: unknown;
      try {
        rules.check(id);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(OutpostError);
      expect(err).toMatchObject({ code: 'forbidden', retryable: false, message: expect.stringContaining(`resources.hr-db.entitlements.${list}`) });
      expect((err as Error).message).not.toContain(id);
    }
  });

  it('SQL resources validate it with the same schema (config_error naming the key)', () => {
    expect(sql({ include: ['a*'] }).entitlements.allows('ab')).toBe(true);
    expect(sql({ include: ['READ_*'] }, 'mssql').entitlements.allows('read_x')).toBe(true);
    expect(sql({ include: ['READ_*'] }, 'postgres').entitlements.allows('read_x')).toBe(false);
    for (const [bad, key] of [
      [{ include: 'a*' }, 'resources.db.entitlements.include'],
      [{ include: [''] }, 'resources.db.entitlements.include.0'],
      [{ only: ['a'] }, 'resources.db.entitlements'],
      [['a'], 'resources.db.entitlements'],
      [{ exclude: ['a\\'] }, 'resources.db.entitlements.exclude'],
      [{ include: ['x'.repeat(513)] }, 'resources.db.entitlements.include.0'],
    ] as const) {
      expect(() => sql(bad)).toThrow(expect.objectContaining({ code: 'config_error', message: expect.stringMatching(new RegExp(`^${key.replace(/\./g, '\\.')}`)) }));
    }
  });
});

describe('LDAP attribute policy', () => {
  const open = new AttributePolicy(undefined);
  const narrow = new AttributePolicy(['uid', 'cn'], ['custom-*']);

  it('password attributes by name, option and pattern; numeric OIDs are never returnable', () => {
    for (const a of ['userPassword', 'USERPASSWORD;binary', 'unicodePwd', 'ms-Mcs-AdmPwd', 'msLAPS-Password', 'mslaps-encryptedpassword', '2.5.4.35']) {
      expect(open.mayReturn(a)).toBe(false);
    }
    expect(open.mayReturn('1.2.840.113556.1.8000.2554.1')).toBe(false);
    expect(open.mayReturn('cn;lang-en')).toBe(true);
    expect(narrow.mayReturn('CUSTOM-secret')).toBe(false);
    expect(narrow.mayReturn('objectClass')).toBe(true);
    expect(narrow.mayReturn('sn')).toBe(false);
  });

  it('requested attributes: `*` means the configured set; what may not be returned is left out', () => {
    expect(open.requested('r', [])).toEqual([]);
    expect(open.requested('r', ['uid', 'userPassword'])).toEqual(['uid']);
    expect(open.requested('r', ['*', '+'])).toEqual(['*', '+']);
    expect(open.requested('r', ['1.1'])).toEqual(['1.1']);
    expect(narrow.requested('r', ['*']).sort()).toEqual(['cn', 'objectclass', 'uid']);
    expect(narrow.requested('r', ['uid', 'sn'])).toEqual(['uid']);
    expect(() => narrow.requested('r', ['sn'])).toThrow(expect.objectContaining({ code: 'forbidden' }));
  });
});
