import { describe, expect, it } from '@jest/globals';
import { Type } from '@sinclair/typebox';
import { compileResourceSchema, freezeOptions, IntIn, Strict, Text } from '../../lib/config/resource.js';
import { parseLdapConfig } from '../../lib/connectors/ldap/index.js';
import { parseOptions } from '../../lib/connectors/sql/index.js';

const schema = compileResourceSchema(
  Type.Object(
    {
      kind: Type.Literal('demo'),
      url: Text(100),
      mode: Type.Optional(Type.Union([Type.Literal('a'), Type.Literal('b'), Type.Literal('c')])),
      flavor: Type.Optional(Type.Union([Type.Literal('ad'), Type.Literal('openldap')])),
      tls: Type.Optional(Type.Union([Type.Boolean(), Type.Object({ caFile: Type.Optional(Text()) }, Strict)])),
      pool: Type.Optional(Type.Object({ max: Type.Optional(IntIn(1, 100)) }, Strict)),
      names: Type.Optional(Type.Array(Type.String({ pattern: '^[a-z]+$' }), { maxItems: 2 })),
      sql: Type.Optional(Type.String({ minLength: 1, errorMessage: 'must be a non-empty SQL string' })),
    },
    Strict,
  ),
);

const reasons = (raw: Record<string, unknown>): string => {
  try {
    schema.check('r1', { kind: 'demo', url: 'x', ...raw });
  } catch (err) {
    expect(err).toMatchObject({ code: 'config_error' });
    return (err as Error).message;
  }
  throw new Error('expected a config_error');
};

describe('resource schemas (lib/config/resource.ts)', () => {
  it('explain each mistake in plain words, naming resources.<name>.<key>', () => {
    expect(reasons({ colour: 'red' })).toBe('resources.r1.colour: unknown key');
    expect(reasons({ url: undefined })).toBe('resources.r1.url: is required');
    expect(reasons({ url: '' })).toBe('resources.r1.url: must be a non-empty string');
    expect(reasons({ url: 'x'.repeat(101) })).toBe('resources.r1.url: must be at most 100 characters');
    expect(reasons({ mode: 'd' })).toBe('resources.r1.mode: must be one of "a", "b", "c"');
    expect(reasons({ flavor: 'nds' })).toBe('resources.r1.flavor: must be "ad" or "openldap"');
    expect(reasons({ pool: { max: 0 } })).toBe('resources.r1.pool.max: must be an integer in [1, 100]');
    expect(reasons({ pool: { max: 1.5 } })).toBe('resources.r1.pool.max: must be an integer in [1, 100]');
    expect(reasons({ pool: 4 })).toBe('resources.r1.pool: must be an object');
    expect(reasons({ names: ['ok', 'Not OK'] })).toBe('resources.r1.names.1: must match ^[a-z]+$');
    expect(reasons({ names: ['a', 'b', 'c'] })).toBe('resources.r1.names: must have at most 2 items');
    expect(reasons({ sql: '' })).toBe('resources.r1.sql: must be a non-empty SQL string');
  });

  it('explain a union by the member the value picks', () => {
    expect(reasons({ tls: { caFile: 'x', verify: false } })).toBe('resources.r1.tls.verify: unknown key');
    expect(reasons({ tls: 'yes' })).toBe('resources.r1.tls: must be a boolean or an object');
  });

  it('name up to three wrong keys at once and never show a value', () => {
    const text = reasons({ url: 'Secret-In-Url-1'.repeat(10), mode: 'Secret-Mode-2', pool: { max: 1000 }, extra: 'Secret-3' });
    expect(text.split('; ')).toHaveLength(3);
    expect(text).not.toMatch(/Secret-/);
  });

  it('freeze the options built from them, all the way down', () => {
    const opts = freezeOptions({ a: { b: [1, 2] }, buf: Buffer.from('x') });
    expect(Object.isFrozen(opts) && Object.isFrozen(opts.a) && Object.isFrozen(opts.a.b)).toBe(true);
    expect(Object.isFrozen(opts.buf)).toBe(false);
    const sql = parseOptions('r1', { kind: 'postgres', pool: { max: 2 } }, { readSecret: () => '', env: {} });
    expect(Object.isFrozen(sql) && Object.isFrozen(sql.pool) && Object.isFrozen(sql.connection)).toBe(true);
    const ldap = parseLdapConfig('r1', { url: 'ldap://h', bindDN: 'cn=a,dc=b', baseDN: 'dc=b', password: 'Frozen-Pw-1' }, { readSecret: () => '' });
    expect(Object.isFrozen(ldap)).toBe(true);
  });
});
