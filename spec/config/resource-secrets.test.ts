import { afterAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildConnectors } from '../../lib/agent/connectors.js';
import { loadConnectorKinds } from '../../lib/agent/connector-kinds.js';
import { readSecretFile } from '../../lib/config/secrets.js';
import { parseLdapConfig } from '../../lib/connectors/ldap/index.js';
import { parseOptions } from '../../lib/connectors/sql/index.js';
import { silentLogger } from '../../lib/log/index.js';
import { systemClock } from '../../lib/util/clock.js';
import { redact } from '../../lib/util/redact.js';

const dir = mkdtempSync(join(tmpdir(), 'outpost-resource-secrets-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Every kind with a password, reduced to "parse this entry with these password
 * keys and give me the password": LDAP keeps them at the top, SQL under
 * `connection`. The keys, the rules and the errors must be the same.
 */
interface Kind {
  kind: string;
  /** Where the password keys live, as the error names them. */
  prefix: string;
  parse(secret: Record<string, unknown>, env: Record<string, string>): string | undefined;
}
const deps = (env: Record<string, string>) => ({ readSecret: (p: string) => readSecretFile(p), env });
const ldapBase = { url: 'ldap://127.0.0.1:1', bindDN: 'cn=svc,dc=example,dc=org', baseDN: 'dc=example,dc=org' };
const KINDS: Kind[] = [
  { kind: 'ldap', prefix: '', parse: (secret, env) => parseLdapConfig('r1', { ...ldapBase, ...secret }, deps(env)).password() },
  ...(['postgres', 'mysql', 'mssql'] as const).map((kind) => ({
    kind,
    prefix: 'connection.',
    parse: (secret: Record<string, unknown>, env: Record<string, string>) =>
      parseOptions('r1', { kind, connection: { host: 'db', user: 'u', ...secret } }, deps(env)).connection.password,
  })),
];

function configError(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    expect(err).toMatchObject({ code: 'config_error' });
    return err as Error;
  }
  throw new Error('expected a config_error');
}

describe.each(KINDS)('the password of a $kind resource', ({ kind, prefix, parse }) => {
  const key = (k: string) => `resources.r1.${prefix}${k}`;

  it('comes from passwordFile (trailing newline trimmed), passwordEnv or password, and is registered for redaction', () => {
    const file = join(dir, `${kind}-pw`);
    writeFileSync(file, `File-Pw-${kind}-1\n`);
    expect(parse({ passwordFile: file }, {})).toBe(`File-Pw-${kind}-1`);
    expect(parse({ passwordEnv: 'OUTPOST_TEST_PW' }, { OUTPOST_TEST_PW: `Env-Pw-${kind}-2` })).toBe(`Env-Pw-${kind}-2`);
    expect(parse({ password: `Inline-Pw-${kind}-3` }, {})).toBe(`Inline-Pw-${kind}-3`);
    expect(redact(`x File-Pw-${kind}-1 Env-Pw-${kind}-2 Inline-Pw-${kind}-3`)).toBe('x [REDACTED] [REDACTED] [REDACTED]');
  });

  it('is given one way only, with the same error for every kind, never showing the value', () => {
    const file = join(dir, `${kind}-pw2`);
    writeFileSync(file, 'Other-Pw-9\n');
    const both = configError(() => parse({ password: 'Two-Ways-Pw-7', passwordFile: file }, {}));
    expect(both.message).toBe(`${key('password')}: set only one of password, passwordFile or passwordEnv`);
    expect(both.message).not.toContain('Two-Ways-Pw-7');
    const envAndInline = configError(() => parse({ password: 'Two-Ways-Pw-8', passwordEnv: 'OUTPOST_TEST_PW' }, { OUTPOST_TEST_PW: 'x-y-z' }));
    expect(envAndInline.message).toBe(`${key('password')}: set only one of password, passwordFile or passwordEnv`);
  });

  it('names the key when the variable is unset, the file unreadable or the variable name malformed', () => {
    expect(configError(() => parse({ passwordEnv: 'OUTPOST_UNSET_PW' }, {})).message).toBe(`${key('passwordEnv')}: environment variable OUTPOST_UNSET_PW is not set`);
    expect(configError(() => parse({ passwordEnv: 'OUTPOST_EMPTY_PW' }, { OUTPOST_EMPTY_PW: '' })).message).toContain(key('passwordEnv'));
    expect(configError(() => parse({ passwordFile: join(dir, 'absent') }, {})).message).toMatch(/cannot read .*absent: ENOENT/);
    expect(configError(() => parse({ passwordEnv: 'not a name' }, {})).message).toBe(`${key('passwordEnv')}: must match ^[A-Za-z_][A-Za-z0-9_]*$`);
    expect(configError(() => parse({ passwordFile: '' }, {})).message).toBe(`${key('passwordFile')}: must be a non-empty string`);
  });

  it('counts null as not set, as the earlier SQL options did', () => {
    expect(parse({ password: null, passwordFile: null, passwordEnv: 'OUTPOST_TEST_PW' }, { OUTPOST_TEST_PW: 'Null-Pw-4' })).toBe('Null-Pw-4');
  });
});

describe('resource passwords through the agent', () => {
  it('LDAP requires one (naming passwordFile), SQL may go without (trust or peer authentication)', () => {
    expect(configError(() => parseLdapConfig('r1', ldapBase, deps({}))).message).toBe('resources.r1.passwordFile: a password is required: set passwordFile, passwordEnv or password');
    expect(parseOptions('r1', { kind: 'postgres' }, deps({})).connection.password).toBeUndefined();
  });

  it('passwordEnv reads the agent process environment for every kind (the built-in factories)', async () => {
    process.env.OUTPOST_SPEC_RESOURCE_PW = 'Process-Env-Pw-5';
    try {
      const kinds = await loadConnectorKinds(['ldap', 'postgres']);
      const connectors = buildConnectors(
        {
          dir: { kind: 'ldap', ...ldapBase, passwordEnv: 'OUTPOST_SPEC_RESOURCE_PW' },
          db: { kind: 'postgres', connection: { host: '127.0.0.1', passwordEnv: 'OUTPOST_SPEC_RESOURCE_PW' } },
        },
        kinds,
        { log: silentLogger(), clock: systemClock, readSecret: (p) => readSecretFile(p) },
      );
      expect([...connectors.keys()]).toEqual(['dir', 'db']);
      await Promise.all([...connectors.values()].map((c) => c.close()));
      delete process.env.OUTPOST_SPEC_RESOURCE_PW;
      const err = configError(() => buildConnectors({ dir: { kind: 'ldap', ...ldapBase, passwordEnv: 'OUTPOST_SPEC_RESOURCE_PW' } }, kinds, { log: silentLogger(), clock: systemClock, readSecret: () => '' }));
      expect(err.message).toBe('invalid configuration: resources.dir.passwordEnv: environment variable OUTPOST_SPEC_RESOURCE_PW is not set');
    } finally {
      delete process.env.OUTPOST_SPEC_RESOURCE_PW;
    }
  });
});
